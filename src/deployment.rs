//! What a valid config can still get wrong for users once deployed: links that no browser can
//! open, pages that may not use camera and microphone, an endpoint a platform will not call,
//! rate limits keyed on a proxy. [`review`] finds them; a refusal stops `check-config` and the
//! daemon (through `Config::validate`), a warning is printed by `check-config` and logged at
//! start.

use crate::config::Config;
use std::net::IpAddr;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Users would meet a broken setup: the config is refused.
    Refuse,
    /// Right for some setups (a test on one machine), wrong for most.
    Warn,
}

/// One thing the review found, about one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub key: &'static str,
    pub message: String,
}

/// Reviews the deployment `config` describes.
pub fn review(config: &Config) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut add = |severity, key, message: String| found.push(Finding { severity, key, message });
    let listen = config.server.listen;
    let public = config.server.public_url.as_deref().and_then(|u| url::Url::parse(u).ok());

    // Chat cards carry links: without public_url they name the listen address.
    if let Some(adapter) = config.adapters.first()
        && public.is_none()
    {
        let link = format!("http://{listen}");
        if listen.ip().is_unspecified() {
            add(Severity::Refuse, "server.public_url", format!(
                "must be set while a chat adapter ({}) is on and server.listen is {listen}: cards would link to {link}, which no browser can open",
                adapter.platform()
            ));
        } else if !listen.ip().is_loopback() {
            add(Severity::Warn, "server.public_url", format!(
                "is unset: cards link to {link}, which only that network reaches, over http (no camera or microphone outside localhost)"
            ));
        } else {
            add(Severity::Warn, "server.public_url", format!(
                "is unset: cards link to {link}, which only this machine can open; set the https address users reach"
            ));
        }
    }

    // Browsers grant camera and microphone to secure origins only.
    if let Some(url) = &public
        && url.scheme() == "http"
        && !is_localhost(url)
    {
        add(Severity::Warn, "server.public_url", format!(
            "is {url}: browsers allow camera and microphone only on https:// pages (or http://localhost), so rooms would have no media"
        ));
    }

    // Telegram refuses a link button to a host without a dot (localhost): its cards then
    // carry the link as text, with no Join button.
    let link = public.clone().or_else(|| url::Url::parse(&config.public_url()).ok());
    if config.adapters.iter().any(|a| a.platform() == "telegram")
        && let Some(link) = link.filter(|l| !callbridge_telegram::link_button_accepted(l))
    {
        add(Severity::Warn, "server.public_url", format!(
            "is {link}: Telegram refuses link buttons to a host without a dot, so Telegram cards carry the link as text and have no Join button"
        ));
    }

    // A platform that calls an endpoint of ours does so over https only.
    for adapter in &config.adapters {
        if let Some(path) = adapter.webhook_path()
            && public.as_ref().is_some_and(|u| u.scheme() != "https")
        {
            add(Severity::Refuse, "server.public_url", format!(
                "must be https:// for {}'s endpoint ({path}): the platform calls https endpoints only",
                adapter.platform()
            ));
        }
    }

    // https in public_url while the daemon speaks plain http: a proxy terminates TLS in front.
    let proxied = public.as_ref().is_some_and(|u| u.scheme() == "https");
    if proxied && config.server.trusted_proxies.is_empty() && !config.server.trust_forwarded_for {
        add(Severity::Warn, "server.trusted_proxies", format!(
            "is empty while a proxy serves {}: the rate limits would count every client as the proxy's address; list the proxy (e.g. [\"127.0.0.1/32\"])",
            config.public_url()
        ));
    }
    found
}

fn is_localhost(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn findings(text: &str) -> Vec<(Severity, &'static str)> {
        let config = Config::parse(text, Path::new("c.toml"), &crate::daemon::platforms()).unwrap();
        review(&config).into_iter().map(|f| (f.severity, f.key)).collect()
    }

    const TELEGRAM: &str = "[telegram]\ntoken = \"123:abc\"\n";

    #[test]
    fn each_rule_fires_alone() {
        assert_eq!(findings(""), vec![]);
        assert_eq!(findings(TELEGRAM), vec![(Severity::Warn, "server.public_url")]);
        let open = format!("[server]\nlisten = \"0.0.0.0:8080\"\n{TELEGRAM}");
        assert_eq!(findings(&open), vec![(Severity::Refuse, "server.public_url")]);
        assert_eq!(findings("[server]\npublic_url = \"http://call.example.org\"\n"), vec![(Severity::Warn, "server.public_url")]);
        assert_eq!(findings("[server]\npublic_url = \"http://localhost:8080\"\n"), vec![]);
        let no_dot = format!("[server]\npublic_url = \"http://localhost:8080\"\n{TELEGRAM}");
        assert_eq!(findings(&no_dot), vec![(Severity::Warn, "server.public_url")], "Telegram takes no Join button to localhost");
        assert_eq!(findings("[server]\npublic_url = \"https://call.example.org\"\n"), vec![(Severity::Warn, "server.trusted_proxies")]);
        let behind = "[server]\npublic_url = \"https://call.example.org\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n";
        assert_eq!(findings(behind), vec![]);
        let discord = "[discord]\nmode = \"interactions\"\ntoken = \"t\"\napplication_id = \"12\"\npublic_key = \"0000000000000000000000000000000000000000000000000000000000000000\"\n";
        let refused = findings(&format!("[server]\npublic_url = \"http://localhost:8080\"\n{discord}"));
        assert_eq!(refused, vec![(Severity::Refuse, "server.public_url")]);
    }
}

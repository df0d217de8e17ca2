//! What every adapter's settings share: secrets that never print, durations written the human
//! way, the reader of one `[section]` out of the whole file (so errors keep their line), and
//! the error every check reports.
//!
//! A section is read from the whole document rather than from a value cut out of it: TOML's
//! deserializer knows spans only while it reads the original text, and a self-hoster's error
//! must name the file, the line and the key.

use serde::de::{DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::marker::PhantomData;
use std::time::Duration;

/// A secret string: deserializes like a string, never prints. `Debug` and `Serialize` both
/// show `<redacted>`, which is what `check-config` relies on; [`secrets_in`] finds every one
/// in a value, so a new secret key is masked in the logs without being listed anywhere.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself; call sites that need it are few and obvious.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether it is empty once trimmed (an unset variable, a blank line in a file).
    pub fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}
thread_local! {
    /// Where [`secrets_in`] gathers the secrets serialized on this thread, while it runs.
    static GATHERED: std::cell::RefCell<Option<Vec<String>>> = const { std::cell::RefCell::new(None) };
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        GATHERED.with(|g| {
            if let Some(found) = g.borrow_mut().as_mut() {
                found.push(self.0.clone());
            }
        });
        s.serialize_str("<redacted>")
    }
}

/// Every secret inside `value` (its `Secret` fields, however deep), to keep out of the logs.
pub fn secrets_in<T: Serialize + ?Sized>(value: &T) -> Vec<String> {
    GATHERED.with(|g| *g.borrow_mut() = Some(Vec::new()));
    let _ = serde_json::to_value(value);
    let found = GATHERED.with(|g| g.borrow_mut().take()).unwrap_or_default();
    found.into_iter().filter(|s| !s.trim().is_empty()).collect()
}
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Durations written the human way: `"90d"`, `"10s"`, `"1h 30m"`.
pub mod human_duration {
    use super::*;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
    /// The shortest exact form: `90d`, `10s`, `1500ms`.
    pub fn format(d: Duration) -> String {
        let ms = d.as_millis();
        for (unit, size) in [("d", 86_400_000u128), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
            if ms > 0 && ms.is_multiple_of(size) {
                return format!("{}{unit}", ms / size);
            }
        }
        format!("{ms}ms")
    }
}

/// Why a section (or the environment meant for it) cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The TOML does not fit the section's type; the error's span points into the document.
    #[error("{0}")]
    Parse(#[from] toml::de::Error),
    /// A value parsed but is not allowed; `key` is the full key (`telegram.token`).
    #[error("invalid value for {key}: {message}")]
    Invalid { key: String, message: String },
}

/// Shorthand for [`SettingsError::Invalid`].
pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> SettingsError {
    SettingsError::Invalid { key: key.into(), message: message.into() }
}

/// Reads the table `[name]` out of a whole TOML document, passing over every other key (each
/// belongs to another reader). `None` when the document has no such table.
pub fn section<S: DeserializeOwned>(doc: &str, name: &str) -> Result<Option<S>, toml::de::Error> {
    struct Pick<'n, S>(&'n str, PhantomData<S>);
    impl<'de, S: DeserializeOwned> Visitor<'de> for Pick<'_, S> {
        type Value = Option<S>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a TOML document")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<S>, A::Error> {
            let mut found = None;
            while let Some(key) = map.next_key::<String>()? {
                if key == self.0 {
                    found = Some(map.next_value::<S>()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }
    toml::Deserializer::new(doc).deserialize_map(Pick(name, PhantomData))
}

/// A TOML error as a self-hoster reads it: `line N: section.key: what is wrong`, with TOML's
/// own snippet of the line. The key is the one written on the error's line, and its table the
/// nearest header above it.
pub fn describe(doc: &str, error: &toml::de::Error) -> String {
    let message = error.to_string();
    let Some(span) = error.span() else { return message.trim_end().to_owned() };
    let start = span.start.min(doc.len());
    let line_no = doc[..start].matches('\n').count() + 1;
    let line = doc.lines().nth(line_no - 1).unwrap_or("").trim();
    let key = line.split_once('=').map(|(k, _)| k.trim().trim_matches('"')).filter(|k| !k.is_empty() && !k.starts_with('['));
    let table = doc.lines().take(line_no).collect::<Vec<_>>().into_iter().rev().map(str::trim).find_map(|l| {
        l.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")).or_else(|| l.strip_prefix('[').and_then(|l| l.strip_suffix(']')))
    });
    match (table, key) {
        (Some(table), Some(key)) => format!("line {line_no}: {table}.{key}: {}", message.trim_end()),
        (None, Some(key)) => format!("line {line_no}: {key}: {}", message.trim_end()),
        _ => format!("line {line_no}: {}", message.trim_end()),
    }
}

/// The value of environment variable `var`, as a secret, when it is set and not empty.
pub fn env_secret(env: crate::Env<'_>, var: &str) -> Option<Secret> {
    env(var).filter(|v| !v.is_empty()).map(Secret::new)
}

/// Checks that a required secret is there; the error names the key and the variable that
/// can carry it instead.
pub fn require_secret(key: &str, secret: Option<&Secret>, var: &str) -> Result<(), SettingsError> {
    match secret {
        Some(s) if !s.is_blank() => Ok(()),
        _ => Err(invalid(key, format!("is required (or set {var})"))),
    }
}

/// The keys of `S`'s example section in `doc` (commented out there, see
/// [`commented_example`]) whose values are not `S::default()`'s, leaving out `placeholders`
/// (keys the example fills with sample values). For the adapters' tests: the example file
/// documents every default.
pub fn example_differences<S: crate::Section>(doc: &str, placeholders: &[&str]) -> Vec<String> {
    let table = |s: &S| match toml::Value::try_from(s) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    let Ok(Some(example)) = section::<S>(&commented_example(doc), S::NAME) else { return vec![format!("[{}] example", S::NAME)] };
    let (shown, default) = (table(&example), table(&S::default()));
    let keys: std::collections::BTreeSet<&String> = shown.keys().chain(default.keys()).collect();
    keys.into_iter()
        .filter(|k| !placeholders.contains(&k.as_str()) && shown.get(*k) != default.get(*k))
        .map(|k| format!("{}.{k}", S::NAME))
        .collect()
}

/// Reads a section as the daemon would, from `doc` and the (name, value) pairs of `env`: for
/// the adapters' tests.
pub fn read_section<S: crate::Section>(doc: &str, env: &[(&str, &str)]) -> Result<Option<S>, SettingsError> {
    let from_file = section::<S>(doc, S::NAME)?;
    S::apply_env(from_file, &|k| env.iter().find(|(name, _)| *name == k).map(|(_, v)| v.to_string()))
}

/// Checks that a URL is http(s); `key` names it in the error.
pub fn check_http_url(key: &str, url: &url::Url) -> Result<(), SettingsError> {
    match url.scheme() {
        "http" | "https" => Ok(()),
        _ => Err(invalid(key, "must be an http(s) URL")),
    }
}

/// The checks every adapter makes of its pacing and request timeout.
pub fn check_limits(section: &str, per_minute: u32, most_per_minute: u32, request_timeout: Duration) -> Result<(), SettingsError> {
    if !(1..=most_per_minute).contains(&per_minute) {
        return Err(invalid(format!("{section}.per_minute"), format!("must be 1..={most_per_minute}")));
    }
    if request_timeout < Duration::from_millis(100) || request_timeout > Duration::from_secs(120) {
        return Err(invalid(format!("{section}.request_timeout"), "must be 100ms..=120s"));
    }
    Ok(())
}

/// The commented-out sections of an example file (`# [telegram]` and the `# key = value`
/// lines under it), uncommented: each adapter's tests check its example against its defaults.
pub fn commented_example(doc: &str) -> String {
    doc.lines()
        .skip_while(|l| !(l.starts_with("# [") && l.ends_with(']')))
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .filter(|l| {
            l.starts_with('[') || l.split_once(" = ").is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Demo {
        url: Option<String>,
        #[serde(with = "human_duration")]
        every: Duration,
    }

    #[test]
    fn a_section_is_read_alone_and_errors_name_line_and_key() {
        let doc = "[server]\nlisten = 3\n\n[demo]\nurl = \"x\"\nevery = \"2m\"\n";
        let demo: Demo = section(doc, "demo").unwrap().unwrap();
        assert_eq!((demo.url.as_deref(), demo.every), (Some("x"), Duration::from_secs(120)));
        assert!(section::<Demo>(doc, "other").unwrap().is_none());
        let bad = "[server]\nlisten = 3\n[demo]\nurl = \"x\"\nevry = \"2m\"\n";
        let e = section::<Demo>(bad, "demo").unwrap_err();
        let shown = describe(bad, &e);
        assert!(shown.starts_with("line 5: demo.evry:"), "{shown}");
        let bad = "[demo]\nevery = \"soon\"\n";
        let shown = describe(bad, &section::<Demo>(bad, "demo").unwrap_err());
        assert!(shown.starts_with("line 2: demo.every:"), "{shown}");
    }

    #[test]
    fn secrets_never_print_and_are_all_found() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        let value = std::collections::BTreeMap::from([("k", vec![Some(s), None, Some(Secret::new("x2"))])]);
        assert!(!serde_json::to_string(&value).unwrap().contains("hunter2"));
        assert_eq!(secrets_in(&value), vec!["hunter2".to_owned(), "x2".to_owned()]);
        assert!(secrets_in(&value).len() == 2, "gathering again finds them again");
        assert!(!serde_json::to_string(&value).unwrap().contains("hunter2"), "and printing still hides them");
    }

    #[test]
    fn durations_round_trip() {
        assert_eq!(human_duration::format(Duration::from_secs(90 * 86_400)), "90d");
        assert_eq!(human_duration::format(Duration::from_millis(1500)), "1500ms");
    }
}

//! The command line: run the daemon, check a config, and mint or steer rooms from a shell.
//!
//! Room commands talk to the running daemon's REST API (so its pages and cards see every
//! change at once), with the API token from the config, the environment, or the token file the
//! daemon generated in its data directory.

use crate::config::Config;
use crate::room::RoomKind;
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "callbridge", version, about = "Call links with live join cards for Discord, Matrix and Telegram")]
pub struct Cli {
    /// Config file (TOML). Without one the daemon runs on its embedded defaults.
    #[arg(long, short, global = true, env = "CALLBRIDGE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default).
    Run,
    /// Validate the config and print it as the daemon sees it, secrets redacted.
    CheckConfig,
    /// Ask the world what the config cannot tell: the database, each chat platform's bot,
    /// public_url, the SFU's port, the TURN servers. Exits non-zero when a check fails.
    Doctor,
    /// Mint a room and print its link and host link.
    Create {
        /// Room title.
        #[arg(long)]
        title: Option<String>,
        /// video or voice.
        #[arg(long, value_parser = parse_kind)]
        kind: Option<RoomKind>,
        /// The host's display name.
        #[arg(long)]
        host_name: Option<String>,
        /// Most people in the room at once.
        #[arg(long)]
        max_participants: Option<u32>,
        #[command(flatten)]
        target: Target,
    },
    /// Show a room: status and who came and left.
    Show { id: String, #[command(flatten)] target: Target },
    /// Lock a room to new joiners.
    Lock { id: String, #[command(flatten)] target: Target },
    /// Unlock a room.
    Unlock { id: String, #[command(flatten)] target: Target },
    /// End a room for everyone.
    End { id: String, #[command(flatten)] target: Target },
}

/// Where the daemon is.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The daemon's base URL. Default: its listen address.
    #[arg(long, env = "CALLBRIDGE_URL")]
    pub server: Option<String>,
    /// Print the JSON answer instead of a summary.
    #[arg(long)]
    pub json: bool,
}

fn parse_kind(s: &str) -> Result<RoomKind, String> {
    RoomKind::parse(s).ok_or_else(|| format!("`{s}` is not a room kind (video or voice)"))
}

/// Runs a room command against the daemon.
pub async fn room_command(config: &Config, command: Command) -> anyhow::Result<()> {
    let (method, path, body, target) = match command {
        Command::Create { title, kind, host_name, max_participants, target } => (
            reqwest::Method::POST,
            "/api/v1/rooms".to_owned(),
            Some(json!({"title": title, "kind": kind, "host_name": host_name, "max_participants": max_participants})),
            target,
        ),
        Command::Show { id, target } => (reqwest::Method::GET, format!("/api/v1/rooms/{id}"), None, target),
        Command::Lock { id, target } => (reqwest::Method::POST, format!("/api/v1/rooms/{id}/lock"), None, target),
        Command::Unlock { id, target } => (reqwest::Method::POST, format!("/api/v1/rooms/{id}/unlock"), None, target),
        Command::End { id, target } => (reqwest::Method::POST, format!("/api/v1/rooms/{id}/end"), None, target),
        Command::Run | Command::CheckConfig | Command::Doctor => unreachable!("not a room command"),
    };
    let base = target.server.unwrap_or_else(|| local_url(config));
    let token = match &config.api.token {
        Some(t) => t.clone(),
        None => {
            let path = config.storage.data_dir.join("api-token");
            crate::daemon::read_token_file(&path)?.with_context(|| {
                format!("no API token: set [api] token or CALLBRIDGE_API_TOKEN, or start the daemon once so it writes {}", path.display())
            })?
        }
    };
    let client = reqwest::Client::new();
    let mut request = client.request(method, format!("{}{path}", base.trim_end_matches('/'))).bearer_auth(token.expose());
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.with_context(|| format!("cannot reach the daemon at {base} (is it running?)"))?;
    let status = response.status();
    let value: Value = response.json().await.context("the daemon's answer is not JSON")?;
    if !status.is_success() {
        bail!("{} ({status})", value["message"].as_str().unwrap_or("request failed"));
    }
    if target.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_summary(&value);
    }
    Ok(())
}

/// The daemon's own address, reachable from this machine.
fn local_url(config: &Config) -> String {
    let mut addr = config.server.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    format!("http://{addr}")
}

fn print_summary(v: &Value) {
    if let Some(host_url) = v["host_url"].as_str() {
        println!("Room {}", v["id"].as_str().unwrap_or_default());
        println!("  link:       {}", v["url"].as_str().unwrap_or_default());
        println!("  host link:  {host_url}");
        println!("  kind:       {}", v["kind"].as_str().unwrap_or_default());
        return;
    }
    let title = v["title"].as_str().unwrap_or("(untitled)");
    println!("{title} — {} {} room", v["status"].as_str().unwrap_or_default(), v["kind"].as_str().unwrap_or_default());
    println!("  link: {}", v["url"].as_str().unwrap_or_default());
    let people = v["participants"].as_array().cloned().unwrap_or_default();
    let here: Vec<&str> = people.iter().filter(|p| p["present"] == true).filter_map(|p| p["name"].as_str()).collect();
    println!("  in now ({}): {}", here.len(), here.join(", "));
    for p in &people {
        println!(
            "  - {} joined {} left {}{}",
            p["name"].as_str().unwrap_or_default(),
            p["joined_at"].as_str().unwrap_or_default(),
            p["left_at"].as_str().unwrap_or("-"),
            if p["removed"] == true { " (removed)" } else { "" }
        );
    }
}

//! What the bot hears: `getUpdates` long polling, messages that parse as commands and presses
//! on card buttons, as [`ChatEvent`]s with the admin status the core needs.

use crate::TelegramAdapter;
use callbridge_chat::{
    ActionAck, Actor, Backoff, CardAction, ChatEvent, ChatRef, Inbound, MENU, MessageRef, Receipt, SendError, UserRef,
    parse_command, sleep_or_cancel,
};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use teloxide::payloads::GetUpdatesSetters;
use teloxide::requests::{Request, Requester};
use teloxide::types::{AllowedUpdate, BotCommand, CallbackQuery, ChatId, Message, Update, UpdateKind, UserId};
use teloxide::RequestError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Says hello (`getMe`, `setMyCommands`, retried until they work), then long-polls and sends
/// every command and button press to `inbox` until `cancel` fires.
pub(crate) async fn run(adapter: Arc<TelegramAdapter>, inbox: mpsc::Sender<Inbound>, cancel: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    while adapter.username.get().is_none() {
        let hello = async {
            let me = adapter.call(adapter.bot.get_me()).await?;
            let commands = MENU.iter().map(|c| BotCommand::new(c.name, c.description));
            adapter.call(adapter.bot.set_my_commands(commands)).await?;
            Ok::<_, SendError>(me)
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = hello => match r {
                Ok(me) => {
                    let name = me.user.username.clone().unwrap_or_default();
                    tracing::info!(bot = %name, "telegram bot connected");
                    let _ = adapter.username.set(name);
                }
                Err(error) => {
                    tracing::warn!(%error, "telegram: getMe/setMyCommands failed; retrying");
                    adapter.health.failed(&error, false);
                    if !backoff.wait(&cancel).await { return; }
                }
            }
        }
    }
    let settings = &adapter.settings;
    // What an earlier run (a leader that died, a stop mid-way) took and did not finish goes
    // first; then on from where the last run, on this node or another, left off.
    match adapter.state.begin_run().await {
        Ok(unfinished) => {
            for (key, payload) in unfinished {
                let Some(update) = payload.and_then(|p| serde_json::from_str::<Update>(&p).ok()) else { continue };
                tracing::info!(%key, "telegram: handling an update an earlier run took and did not finish");
                if !adapter.hand_over(update, &inbox, &cancel).await {
                    return;
                }
            }
        }
        Err(error) => tracing::warn!(%error, "telegram: cannot read the updates earlier runs left unfinished"),
    }
    match adapter.state.load(OFFSET_KEY).await {
        Ok(Some(saved)) => {
            adapter.next_update.fetch_max(saved.parse().unwrap_or(0), Ordering::Relaxed);
        }
        Ok(None) => {}
        Err(error) => tracing::warn!(%error, "telegram: cannot read the saved update offset; relying on taken-update marks"),
    }
    backoff.reset();
    loop {
        let poll = adapter
            .poller
            .get_updates()
            .offset(adapter.next_update.load(Ordering::Relaxed))
            .timeout(settings.poll_timeout.as_secs() as u32)
            .allowed_updates([AllowedUpdate::Message, AllowedUpdate::CallbackQuery])
            .send();
        // Bounded as a whole, like every call (see `call`), with room for the long poll.
        let poll = tokio::time::timeout(settings.poll_timeout + settings.request_timeout, poll);
        let updates = tokio::select! {
            _ = cancel.cancelled() => return,
            r = poll => r.unwrap_or_else(|_| Err(RequestError::Io(std::sync::Arc::new(std::io::ErrorKind::TimedOut.into())))),
        };
        let updates = match updates {
            Ok(u) => {
                backoff.reset();
                adapter.health.ok();
                u
            }
            Err(RequestError::RetryAfter(s)) => {
                if !sleep_or_cancel(&cancel, s.duration()).await { return; }
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "telegram: getUpdates failed; retrying");
                adapter.health.failed(&error, false);
                if !backoff.wait(&cancel).await { return; }
                continue;
            }
        };
        for update in updates {
            // Past this update once it is handed over: a stop before then gets it again.
            let next = update.id.0 as i32 + 1;
            if !adapter.hand_over(update, &inbox, &cancel).await {
                return;
            }
            adapter.next_update.fetch_max(next, Ordering::Relaxed);
        }
        let offset = adapter.next_update.load(Ordering::Relaxed).to_string();
        if let Err(error) = adapter.state.save(OFFSET_KEY, &offset).await {
            tracing::warn!(%error, "telegram: cannot save the update offset");
        }
    }
}

/// The saved `getUpdates` offset.
const OFFSET_KEY: &str = "offset";

impl TelegramAdapter {
    /// Turns an update into an event and hands it to the bridge with its receipt, unless a run
    /// (here or on another node) took it already. `false` when the run must stop.
    async fn hand_over(&self, update: Update, inbox: &mpsc::Sender<Inbound>, cancel: &CancellationToken) -> bool {
        let event = match &update.kind {
            UpdateKind::Message(m) => self.on_message(m).await,
            UpdateKind::CallbackQuery(q) => self.on_callback(q).await,
            _ => None,
        };
        let Some(event) = event else { return true };
        let key = format!("update:{}", update.id.0);
        // The update itself is kept until handled: Telegram does not send a confirmed one again.
        let payload = serde_json::to_string(&update).ok();
        match self.state.claim(&key, payload.as_deref()).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(%key, "telegram: update already handled; skipped");
                return true;
            }
            // A database that does not answer lets it through: better once too often than a
            // command lost.
            Err(error) => tracing::warn!(%error, %key, "telegram: cannot mark an update as taken; handling it"),
        }
        let inbound = Inbound { event, receipt: Some(Receipt::new(self.state.clone(), key)) };
        tokio::select! {
            _ = cancel.cancelled() => false,
            r = inbox.send(inbound) => r.is_ok(),
        }
    }

    fn allowed(&self, chat: ChatId) -> bool {
        self.settings.allowed_chats.is_empty() || self.settings.allowed_chats.contains(&chat.0)
    }

    async fn on_message(&self, m: &Message) -> Option<ChatEvent> {
        let text = m.text()?;
        let from = m.from.as_ref().filter(|u| !u.is_bot)?;
        let command = parse_command(text, "/", self.username.get().map(String::as_str))?;
        if !self.allowed(m.chat.id) {
            tracing::info!(chat = m.chat.id.0, "telegram: command from a chat not in allowed_chats; ignored");
            return None;
        }
        let private = m.chat.is_private();
        let is_admin = command.asks_admin() && !private && self.is_admin(m.chat.id, from.id).await;
        Some(ChatEvent::Command {
            answer: None,
            chat_name: m.chat.title().map(str::to_owned),
            chat: ChatRef(m.chat.id.0.to_string()),
            actor: Actor { user: UserRef(from.id.0.to_string()), display_name: from.full_name(), is_admin, handle: from.username.clone() },
            command,
            private,
        })
    }

    async fn on_callback(&self, q: &CallbackQuery) -> Option<ChatEvent> {
        let message = q.message.as_ref();
        let action = q.data.as_deref().and_then(CardAction::decode);
        let (Some(message), Some(action)) = (message, action) else {
            let _ = self.call(self.bot.answer_callback_query(q.id.clone())).await;
            return None;
        };
        let chat = message.chat();
        // A private chat holds the bot's prompts (rings, knocks), whatever `allowed_chats` says.
        if !chat.is_private() && !self.allowed(chat.id) {
            let _ = self.call(self.bot.answer_callback_query(q.id.clone())).await;
            return None;
        }
        let is_admin = !chat.is_private() && self.is_admin(chat.id, q.from.id).await;
        Some(ChatEvent::Action {
            chat: ChatRef(chat.id.0.to_string()),
            message: MessageRef(message.id().0.to_string()),
            actor: Actor { user: UserRef(q.from.id.0.to_string()), display_name: q.from.full_name(), is_admin, handle: q.from.username.clone() },
            action,
            ack: ActionAck(q.id.0.clone()),
        })
    }

    /// Whether `user` administers `chat` (creator or administrator), cached for `admin_cache`.
    async fn is_admin(&self, chat: ChatId, user: UserId) -> bool {
        let key = (chat.0, user.0);
        if let Some((admin, at)) = self.admins.lock().unwrap_or_else(|e| e.into_inner()).get(&key)
            && at.elapsed() < self.settings.admin_cache
        {
            return *admin;
        }
        // A throttled or failed check is retried a little: refusing a real admin over a
        // passing error would be wrong, and this runs while the update waits.
        let mut attempt = 0;
        let admin = loop {
            attempt += 1;
            match self.call(self.bot.get_chat_member(chat, user)).await {
                Ok(member) => break member.kind.is_privileged(),
                Err(SendError::RetryAfter(wait)) if attempt < 3 => tokio::time::sleep(wait.min(Duration::from_secs(5))).await,
                Err(SendError::Transient(_)) if attempt < 3 => tokio::time::sleep(Duration::from_millis(300)).await,
                Err(error) => {
                    tracing::warn!(%error, chat = chat.0, "telegram: getChatMember failed; treating as not an admin");
                    return false;
                }
            }
        };
        let mut admins = self.admins.lock().unwrap_or_else(|e| e.into_inner());
        if admins.len() > 10_000 {
            let ttl = self.settings.admin_cache;
            admins.retain(|_, (_, at)| at.elapsed() < ttl);
        }
        admins.insert(key, (admin, Instant::now()));
        admin
    }
}

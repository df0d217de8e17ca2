//! Scheduled calls (`/call at 18:00 Standup`, `/call in 30m …`, `/call tomorrow 9:00 …`): when
//! one starts, and the reminders in its chat, 10 minutes before and at the start, where the
//! chat's opted-in members are rung too.
//!
//! A schedule lives in the database (`rooms.starts_at`), and each card's reminders are claimed
//! there (`cards.reminded`), so a restart loses none and a fail-over sends none twice. Until 10
//! minutes before the start, joins are refused (`not_yet`) and the link shows a countdown.

use super::Bridge;
use super::ringing::title_of;
use super::texts::Texts;
use crate::room::OPENS_BEFORE_START;
use crate::service::Knocks;
use crate::store::DueReminder;
use callbridge_chat::{Actor, Day, MOST_AHEAD, StartAt, UserRef, fill};
use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone};
use chrono_tz::Tz;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Longest wait between two looks for due reminders (a clock step, or a call scheduled on
/// another node, is noticed within this).
const LOOK_AT_MOST: Duration = Duration::from_secs(5);
/// A scheduled call must start at least this far ahead.
const LEAST_AHEAD_MS: i64 = 60_000;

/// Why a start time cannot be scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unschedulable {
    Passed,
    TooFar,
    /// A local time the zone's clocks skip.
    Missing,
}

impl Unschedulable {
    pub(super) fn text(self, t: &Texts) -> &'static str {
        match self {
            Unschedulable::Passed => t.time_passed,
            Unschedulable::TooFar => t.too_far_ahead,
            Unschedulable::Missing => t.time_missing,
        }
    }
}

/// When `at` falls, in milliseconds since the epoch, read in `tz` at `now_ms`; or why not.
pub(super) fn start_ms(at: StartAt, now_ms: i64, tz: Tz) -> Result<i64, Unschedulable> {
    let start = match at {
        StartAt::In(d) => Some(now_ms + d.as_millis() as i64),
        StartAt::At { day, hour, minute } => {
            let now = DateTime::from_timestamp_millis(now_ms).unwrap_or_default().with_timezone(&tz);
            let time = NaiveTime::from_hms_opt(hour.into(), minute.into(), 0).unwrap_or_default();
            // A time a clock change skips (02:30 on a spring night) is taken an hour later.
            let on = |date: NaiveDate| {
                let local = date.and_time(time);
                tz.from_local_datetime(&local)
                    .earliest()
                    .or_else(|| tz.from_local_datetime(&(local + chrono::Duration::hours(1))).earliest())
                    .map(|t| t.timestamp_millis())
            };
            let today = now.date_naive();
            let tomorrow = today.succ_opt().unwrap_or(today);
            match day {
                Day::Today => on(today),
                Day::Tomorrow => on(tomorrow),
                Day::Next => on(today).filter(|t| *t > now_ms + LEAST_AHEAD_MS).or_else(|| on(tomorrow)),
            }
        }
    };
    match start {
        Some(s) if s < now_ms + LEAST_AHEAD_MS => Err(Unschedulable::Passed),
        Some(s) if s > now_ms + MOST_AHEAD.as_millis() as i64 => Err(Unschedulable::TooFar),
        Some(s) => Ok(s),
        None => Err(Unschedulable::Missing),
    }
}

/// "Thu 3 Dec, 18:00 (Europe/Madrid)" in English (`format` is the language's `date_format`).
pub fn start_label(start_ms: i64, tz: Tz, format: &str) -> String {
    let at = DateTime::from_timestamp_millis(start_ms).unwrap_or_default().with_timezone(&tz);
    format!("{} ({})", at.format(format), tz.name())
}

impl Bridge {
    /// Runs until `cancel`: posts each due reminder of this platform's cards, and at a call's
    /// start rings the chat's opted-in members.
    pub(super) async fn remind(self: Arc<Self>, cancel: CancellationToken) {
        let platform = self.adapter.platform();
        loop {
            let now = self.rooms.now_ms();
            match self.rooms.due_reminders(platform, now).await {
                Ok(due) => {
                    for reminder in due {
                        self.remind_one(&reminder, now).await;
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot read due reminders"),
            }
            let wait = match self.rooms.next_reminder(platform).await {
                Ok(Some(at)) => Duration::from_millis((at - self.rooms.now_ms()).max(0) as u64 + 20).min(LOOK_AT_MOST),
                _ => LOOK_AT_MOST,
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One card's due reminder, claimed first (once per card and stage, whichever node leads).
    async fn remind_one(&self, due: &DueReminder, now: i64) {
        let platform = self.adapter.platform();
        let started = due.starts_at <= now;
        match self.rooms.claim_reminder(&due.room_id, platform, &due.chat, if started { 2 } else { 1 }).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => {
                tracing::warn!(%error, "cannot claim a reminder");
                return;
            }
        }
        let Ok(view) = self.rooms.view(&due.room_id, Knocks::Hidden).await else { return };
        let t = self.t(&due.chat);
        let (title, link) = (title_of(t, &view), view.url.clone());
        if !started {
            // A call scheduled less than 10 minutes ahead: its card said it all just now.
            let scheduled_lately = due.starts_at - now < OPENS_BEFORE_START.as_millis() as i64 - 60_000
                && chrono::DateTime::parse_from_rfc3339(&view.created_at).is_ok_and(|c| now - c.timestamp_millis() < 60_000);
            if !scheduled_lately {
                let minutes = (due.starts_at - now + 59_999) / 60_000;
                let text = fill(t.reminder, &[("title", &title), ("minutes", &minutes.to_string()), ("link", &link)]);
                self.reply(&due.chat, &text).await;
            }
            return;
        }
        self.reply(&due.chat, &fill(t.starting_now, &[("title", &title), ("link", &link)])).await;
        self.rooms.announce_start(&due.room_id);
        // The chat's opted-in members are rung, by the host.
        let host = Actor {
            user: UserRef(view.host_ref.clone().unwrap_or_default()),
            display_name: view.host_name.clone().unwrap_or_else(|| t.the_host.into()),
            is_admin: false,
            handle: None,
        };
        let people: Vec<_> = self.rooms.ring_optins(platform, &due.chat).await.unwrap_or_default().into_iter().filter(|o| o.user_ref != host.user.0).collect();
        if !people.is_empty() {
            self.ring(&due.room_id, &people, &host, None).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EN_DATE: &str = "%a %-d %b, %H:%M";

    #[test]
    fn start_times() {
        // Thu 3 Dec 2026, 10:00 UTC (11:00 in Madrid).
        let now = chrono::Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap().timestamp_millis();
        let madrid: Tz = "Europe/Madrid".parse().unwrap();
        let at = |day, hour, minute| StartAt::At { day, hour, minute };
        let utc = |d: u32, h: u32, m: u32| chrono::Utc.with_ymd_and_hms(2026, 12, d, h, m, 0).unwrap().timestamp_millis();
        assert_eq!(start_ms(StartAt::In(Duration::from_secs(1800)), now, madrid), Ok(now + 1_800_000));
        assert_eq!(start_ms(at(Day::Next, 18, 0), now, madrid), Ok(utc(3, 17, 0)));
        assert_eq!(start_ms(at(Day::Next, 9, 0), now, madrid), Ok(utc(4, 8, 0)), "past today: tomorrow");
        assert_eq!(start_ms(at(Day::Tomorrow, 9, 0), now, Tz::UTC), Ok(utc(4, 9, 0)));
        assert!(start_ms(at(Day::Today, 9, 0), now, Tz::UTC).is_err(), "today, but past");
        assert!(start_ms(at(Day::Next, 10, 0), now, Tz::UTC).is_ok_and(|t| t == utc(4, 10, 0)), "now is not ahead");
        assert_eq!(start_label(utc(3, 17, 0), madrid, EN_DATE), "Thu 3 Dec, 18:00 (Europe/Madrid)");
        // 02:30 does not exist in Madrid on 28 March 2027: an hour later.
        let spring = chrono::Utc.with_ymd_and_hms(2027, 3, 27, 12, 0, 0).unwrap().timestamp_millis();
        let t = start_ms(at(Day::Tomorrow, 2, 30), spring, madrid).unwrap();
        assert_eq!(start_label(t, madrid, EN_DATE), "Sun 28 Mar, 03:30 (Europe/Madrid)");
    }
}

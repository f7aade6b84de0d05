//! When an action is due.
//!
//! An RFC 3339 instant is taken as written (its offset honoured). A date-only value `D` is read in
//! `lifecycle.timezone`: `end_of_day` means the first instant of `D+1` there (the person works their
//! last day), `start_of_day` the first instant of `D`. "First instant" is DST-correct: where a zone
//! skips midnight, the day starts at the first clock time that exists. An effective time in the
//! past, or none at all, means due now.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::Effective;

/// What a date-only effective value means (`lifecycle.date_only_means`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateOnlyMeans {
    /// The first instant of the date itself.
    StartOfDay,
    /// The first instant of the next day: the person works their last day.
    EndOfDay,
}

/// The instant an event with this effective time is due, never earlier than `now`. A date that
/// has no instant under these rules (`9999-12-31` with `end_of_day`: the next day does not exist)
/// is an error, never "due now" by fallback.
pub fn due_at(
    effective: Option<&Effective>,
    now: Timestamp,
    tz: &TimeZone,
    means: DateOnlyMeans,
) -> Result<Timestamp, String> {
    let at = match effective {
        None => return Ok(now),
        Some(Effective::At(t)) => *t,
        Some(Effective::Date(d)) => date_instant(*d, tz, means).ok_or_else(|| {
            format!("the effective date {d} cannot be represented as an instant (lifecycle.date_only_means = {})", means.as_str())
        })?,
    };
    Ok(at.max(now))
}

impl DateOnlyMeans {
    pub fn as_str(self) -> &'static str {
        match self {
            DateOnlyMeans::StartOfDay => "start_of_day",
            DateOnlyMeans::EndOfDay => "end_of_day",
        }
    }
}

fn date_instant(date: Date, tz: &TimeZone, means: DateOnlyMeans) -> Option<Timestamp> {
    let day = match means {
        DateOnlyMeans::StartOfDay => date,
        DateOnlyMeans::EndOfDay => date.tomorrow().ok()?,
    };
    let zoned = day.to_zoned(tz.clone()).ok()?.start_of_day().ok()?;
    Some(zoned.timestamp())
}

/// Whether storing an action that may first run at `run_at` must wake the worker now. The worker
/// looks for due work at least every `poll` (and sleeps until the next due time when that is
/// sooner), so an action due later than one poll from now is found in time without a wake; not
/// waking for those keeps a burst of future-dated deliveries from making the worker search the
/// store once per delivery.
pub fn wakes_worker(run_at: Option<i64>, now_ms: i64, poll: std::time::Duration) -> bool {
    run_at.is_some_and(|at| at <= now_ms.saturating_add(poll.as_millis() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn only_actions_due_within_one_poll_wake_the_worker() {
        let poll = std::time::Duration::from_millis(500);
        assert!(wakes_worker(Some(1_000), 1_000, poll));
        assert!(wakes_worker(Some(900), 1_000, poll));
        assert!(wakes_worker(Some(1_500), 1_000, poll));
        assert!(!wakes_worker(Some(1_501), 1_000, poll));
        assert!(!wakes_worker(None, 1_000, poll));
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }
    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }
    const LONG_AGO: &str = "2000-01-01T00:00:00Z";

    #[test]
    fn a_date_means_midnight_after_the_last_day_by_default() {
        let due = due_at(
            Some(&Effective::Date(date(2026, 12, 1))),
            ts(LONG_AGO),
            &tz("UTC"),
            DateOnlyMeans::EndOfDay,
        )
        .unwrap();
        assert_eq!(due, ts("2026-12-02T00:00:00Z"));
    }

    #[test]
    fn start_of_day_means_midnight_of_the_date_itself() {
        let due = due_at(
            Some(&Effective::Date(date(2026, 12, 1))),
            ts(LONG_AGO),
            &tz("Europe/Berlin"),
            DateOnlyMeans::StartOfDay,
        )
        .unwrap();
        assert_eq!(due, ts("2026-11-30T23:00:00Z"));
    }

    #[test]
    fn dates_are_read_in_the_configured_zone() {
        let d = Some(Effective::Date(date(2026, 7, 15)));
        let at =
            |zone| due_at(d.as_ref(), ts(LONG_AGO), &tz(zone), DateOnlyMeans::EndOfDay).unwrap();
        assert_eq!(at("Australia/Sydney"), ts("2026-07-15T14:00:00Z"));
        assert_eq!(at("America/Los_Angeles"), ts("2026-07-16T07:00:00Z"));
        assert_eq!(at("Asia/Kolkata"), ts("2026-07-15T18:30:00Z"));
    }

    #[test]
    fn dst_changes_move_the_utc_instant_of_midnight() {
        // Berlin: CET (+01:00) until 2026-03-29 02:00, CEST (+02:00) after.
        let berlin = tz("Europe/Berlin");
        let before = due_at(
            Some(&Effective::Date(date(2026, 3, 28))),
            ts(LONG_AGO),
            &berlin,
            DateOnlyMeans::StartOfDay,
        )
        .unwrap();
        let after = due_at(
            Some(&Effective::Date(date(2026, 3, 30))),
            ts(LONG_AGO),
            &berlin,
            DateOnlyMeans::StartOfDay,
        )
        .unwrap();
        assert_eq!(before, ts("2026-03-27T23:00:00Z"));
        assert_eq!(after, ts("2026-03-29T22:00:00Z"));
    }

    #[test]
    fn a_zone_that_skips_midnight_starts_the_day_at_the_first_existing_time() {
        // America/Santiago skips 00:00-01:00 on 2026-09-06 (DST starts at midnight).
        let due = due_at(
            Some(&Effective::Date(date(2026, 9, 6))),
            ts(LONG_AGO),
            &tz("America/Santiago"),
            DateOnlyMeans::StartOfDay,
        )
        .unwrap();
        assert_eq!(due, ts("2026-09-06T04:00:00Z"));
    }

    #[test]
    fn instants_keep_their_offset() {
        let due = due_at(
            Some(&Effective::At(ts("2026-12-01T09:00:00+05:30"))),
            ts(LONG_AGO),
            &tz("America/New_York"),
            DateOnlyMeans::EndOfDay,
        )
        .unwrap();
        assert_eq!(due, ts("2026-12-01T03:30:00Z"));
    }

    #[test]
    fn past_or_missing_effective_times_are_due_now() {
        let now = ts("2026-11-28T12:00:00Z");
        assert_eq!(
            due_at(None, now, &tz("UTC"), DateOnlyMeans::EndOfDay),
            Ok(now)
        );
        let past = Effective::Date(date(2026, 1, 1));
        assert_eq!(
            due_at(Some(&past), now, &tz("UTC"), DateOnlyMeans::EndOfDay),
            Ok(now)
        );
    }

    #[test]
    fn a_no_end_date_like_9999_12_31_is_refused_and_a_far_date_is_scheduled() {
        let now = ts("2026-11-28T12:00:00Z");
        let never = Effective::Date(date(9999, 12, 31));
        for means in [DateOnlyMeans::EndOfDay, DateOnlyMeans::StartOfDay] {
            let err = due_at(Some(&never), now, &tz("UTC"), means).unwrap_err();
            assert!(err.contains("9999-12-31"), "{err}");
        }
        let far = Effective::Date(date(9000, 1, 1));
        let due = due_at(Some(&far), now, &tz("UTC"), DateOnlyMeans::EndOfDay).unwrap();
        assert_eq!(due, ts("9000-01-02T00:00:00Z"));
    }
}

//! Time: the kernel's monotonic clock, its mapping to the wall clock, ISO 8601 text, and the
//! two millisecond resolutions of the output. A leaf: it imports no pipeline stage.
//!
//! **Clocks.** Every eBPF record is stamped by `bpf_ktime_get_ns`, which reads
//! CLOCK_MONOTONIC; [`monotonic_ns`] reads the same clock in user space, so the daemon, the
//! fetcher and the tests can lay their own stamps over the kernel's. [`WallOffset`] turns such a
//! stamp into unix time.
//!
//! **Milliseconds.** Two resolutions, on purpose, so that each output stays what it has been:
//! - page loads as the stitcher builds them, the history stores them and its HAR export writes
//!   them: 10 µs, two decimals ([`stored_ms`], [`round_stored_ms`]). A phase sum is rounded
//!   like its phases, so a page load reads back from its JSON exactly as it was built;
//! - the reference fetcher (`tracer fetch`), whose phases are measured in user space and
//!   compared against the kernel's: 1 µs, three decimals ([`round_fetch_ms`]).
//!
//! **Dates.** Calendar arithmetic is the `time` crate's; nothing here works out days by hand.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Nanoseconds on CLOCK_MONOTONIC, the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    u64::try_from(read_clock_ns(libc::CLOCK_MONOTONIC)).unwrap_or(0)
}

/// Unix time now, in ms (wall clock).
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Nanoseconds on `clock`; 0 if it cannot be read (both clocks used here always exist).
fn read_clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec we own.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// CLOCK_REALTIME - CLOCK_MONOTONIC in ns: adding it to a kernel timestamp gives unix time.
/// Read once (at start-up) and reused, so that every row of a run uses the same mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallOffset(pub i64);

impl WallOffset {
    /// Reads both clocks now.
    pub fn now() -> Self {
        let mono = read_clock_ns(libc::CLOCK_MONOTONIC);
        let real = read_clock_ns(libc::CLOCK_REALTIME);
        WallOffset(real - mono)
    }

    /// Unix time in ms of a CLOCK_MONOTONIC timestamp.
    pub fn unix_ms(self, monotonic_ns: u64) -> i64 {
        let ns = (monotonic_ns.min(i64::MAX as u64) as i64).saturating_add(self.0);
        ns.div_euclid(1_000_000)
    }

    /// Unix time in ns of a CLOCK_MONOTONIC timestamp (0 for a time before 1970).
    pub fn unix_ns(self, monotonic_ns: u64) -> u64 {
        let ns = (monotonic_ns.min(i64::MAX as u64) as i64).saturating_add(self.0);
        u64::try_from(ns).unwrap_or(0)
    }
}

/// A time span on the monotonic clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// CLOCK_MONOTONIC nanoseconds at the start.
    pub start_ns: u64,
    /// CLOCK_MONOTONIC nanoseconds at the end.
    pub end_ns: u64,
}

impl Span {
    /// A span; an end before the start is taken as the start (an empty span).
    pub fn new(start_ns: u64, end_ns: u64) -> Span {
        Span { start_ns, end_ns: end_ns.max(start_ns) }
    }
    /// A span from `start_ns` until now.
    pub fn since(start_ns: u64) -> Span {
        Span::new(start_ns, monotonic_ns())
    }
    pub fn ns(&self) -> u64 {
        self.end_ns - self.start_ns
    }
    /// The length in ms, unrounded.
    pub fn ms(&self) -> f64 {
        ns_to_ms(self.ns())
    }
}

/// Nanoseconds as milliseconds, unrounded.
pub fn ns_to_ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// A duration in ns as ms at the stored resolution (10 µs, two decimals): the phases of a
/// stitched page load. Divides by 1e4 before rounding (not `round_stored_ms(ns_to_ms(ns))`,
/// which can differ in the last bit), as the stored page loads always have.
pub fn stored_ms(ns: u64) -> f64 {
    (ns as f64 / 1e4).round() / 100.0
}

/// Rounds ms to the stored resolution (10 µs, two decimals): sums and differences of stored
/// phases (a connect that holds its TLS handshake, a HAR entry's `time`, a comparison's diff).
pub fn round_stored_ms(ms: f64) -> f64 {
    (ms * 100.0).round() / 100.0
}

/// Rounds ms to the fetcher's resolution (1 µs, three decimals): the reference fetcher's
/// phases and its HAR.
pub fn round_fetch_ms(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// The UTC time of a unix time in ns; the epoch for one outside the years 1 to 9999 (which no
/// clock or certificate here gives).
fn utc(unix_ns: i128) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(unix_ns).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// ISO 8601 / RFC 3339 in UTC with millisecond precision, `2026-04-14T10:22:33.123Z`, of a unix
/// time in ms (HAR's `startedDateTime`, the history's times).
pub fn iso8601_ms(unix_ms: i64) -> String {
    let t = utc(i128::from(unix_ms) * 1_000_000);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// ISO 8601 in UTC to the second, `2026-04-14T10:22:33Z`, of a unix time in seconds (a
/// certificate's validity).
pub fn iso8601_s(unix_s: i64) -> String {
    let t = utc(i128::from(unix_s) * 1_000_000_000);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso8601_ms(1_776_160_800_123), "2026-04-14T10:00:00.123Z");
        assert_eq!(iso8601_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(iso8601_s(1_893_456_000), "2030-01-01T00:00:00Z");
        assert_eq!(iso8601_s(-1), "1969-12-31T23:59:59Z");
        // The largest X.509 time (GeneralizedTime 99991231235959Z).
        assert_eq!(iso8601_s(253_402_300_799), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn monotonic_moves_forward() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(b >= a);
        assert!(a > 0);
        let s = Span::new(10, 5);
        assert_eq!(s.ns(), 0);
    }

    #[test]
    fn wall_offset() {
        let off = WallOffset::now();
        assert!((off.unix_ms(monotonic_ns()) - now_unix_ms()).abs() < 1000);
        assert_eq!(WallOffset(1_000_000_000_000).unix_ms(500_000), 1_000_000);
        assert_eq!(WallOffset(0).unix_ms(1_999_999), 1);
        assert_eq!(WallOffset(-10).unix_ns(5), 0);
    }

    #[test]
    fn the_two_resolutions() {
        assert_eq!(stored_ms(1_234_567), 1.23);
        assert_eq!(stored_ms(1_235_000), 1.24);
        assert_eq!(round_stored_ms(1.234_567), 1.23);
        assert_eq!(round_fetch_ms(1.234_567), 1.235);
        assert_eq!(ns_to_ms(1_234_567), 1.234_567);
        // A stored value rounds to itself, so sums of stored phases keep their resolution.
        for ns in [0, 9_999, 10_000, 123_456_789, 987_654_321_000] {
            let v = stored_ms(ns);
            assert_eq!(round_stored_ms(v), v, "{ns}");
        }
    }
}

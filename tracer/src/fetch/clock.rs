//! Time stamps on the kernel's monotonic clock (the one `bpf_ktime_get_ns` reads) and the wall
//! clock, and the few conversions the output needs.

use serde::{Deserialize, Serialize};

/// Nanoseconds on CLOCK_MONOTONIC, the clock the eBPF probes stamp their events with.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0);
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Milliseconds since the Unix epoch (wall clock).
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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
    pub fn new(start_ns: u64, end_ns: u64) -> Span {
        Span {
            start_ns,
            end_ns: end_ns.max(start_ns),
        }
    }
    /// A span from `start_ns` until now.
    pub fn since(start_ns: u64) -> Span {
        Span::new(start_ns, monotonic_ns())
    }
    pub fn ns(&self) -> u64 {
        self.end_ns - self.start_ns
    }
    pub fn ms(&self) -> f64 {
        ns_to_ms(self.ns())
    }
}

pub fn ns_to_ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Rounds to microseconds, so that JSON output stays readable.
pub fn round_ms(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// `2024-05-01T12:34:56.789Z` for a Unix time in milliseconds (HAR's startedDateTime).
pub fn iso8601_ms(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let ms = unix_ms.rem_euclid(1000);
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

/// `2024-05-01T12:34:56Z` for a Unix time in seconds.
pub fn iso8601_s(unix_s: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(unix_s);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Unix seconds -> (year, month, day, hour, minute, second), proleptic Gregorian, UTC.
fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days_from_civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso8601_s(1_893_456_000), "2030-01-01T00:00:00Z");
        assert_eq!(iso8601_s(-1), "1969-12-31T23:59:59Z");
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
}

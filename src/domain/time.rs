//! Times as the APIs print them, from milliseconds since the Unix epoch (UTC). Pure, so every
//! dialect's form is tested natively and the Workers clock is not needed to format one.
//!
//! The references print three forms: SPWP (and wagate's own views) RFC 3339 with milliseconds,
//! `2026-06-01T12:00:00.835Z`; LoginWA's OTP and campaign times whole seconds with `Z`,
//! `2026-06-01T12:00:00Z`; LoginWA's devices and webhooks whole seconds with an offset,
//! `2026-06-01T10:00:00+00:00`.

/// The civil date and time of `ms`, proleptic Gregorian (Howard Hinnant's `civil_from_days`).
fn civil(ms: u64) -> (u64, u64, u64, u64, u64, u64, u64) {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Days since 0000-03-01, so that leap days fall at the end of each 400-year era.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day, rem / 3600, rem % 3600 / 60, rem % 60, ms % 1000)
}

fn seconds(ms: u64) -> String {
    let (y, mo, d, h, mi, s, _) = civil(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}")
}

/// `2026-06-01T12:00:00.835Z`: SPWP's form, and wagate's own (admin, and LoginWA views the
/// reference shows no time for).
pub fn millis(ms: u64) -> String {
    format!("{}.{:03}Z", seconds(ms), ms % 1000)
}

/// `2026-06-01T12:00:00Z`: LoginWA's OTP (`verified_at`) and campaign times.
pub fn seconds_z(ms: u64) -> String {
    format!("{}Z", seconds(ms))
}

/// `2026-06-01T10:00:00+00:00`: LoginWA's device times and its webhooks (the body's
/// `timestamp` and the endpoint views).
pub fn seconds_offset(ms: u64) -> String {
    format!("{}+00:00", seconds(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-06-01T12:00:00.835Z
    const JUNE: u64 = 1_780_315_200_835;

    #[test]
    fn the_three_forms_the_references_print() {
        assert_eq!(millis(JUNE), "2026-06-01T12:00:00.835Z");
        assert_eq!(seconds_z(JUNE), "2026-06-01T12:00:00Z");
        assert_eq!(seconds_offset(JUNE), "2026-06-01T12:00:00+00:00");
        assert_eq!(millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(seconds_offset(999), "1970-01-01T00:00:00+00:00", "fractions are cut, not rounded");
    }

    #[test]
    fn calendar_edges() {
        assert_eq!(seconds_z(951_782_400_000), "2000-02-29T00:00:00Z", "a 400-year leap day");
        assert_eq!(seconds_z(4_107_542_399_000), "2100-02-28T23:59:59Z");
        assert_eq!(seconds_z(4_107_542_400_000), "2100-03-01T00:00:00Z", "2100 is no leap year");
        assert_eq!(millis(1_798_761_599_999), "2026-12-31T23:59:59.999Z");
        assert_eq!(millis(1_798_761_600_000), "2027-01-01T00:00:00.000Z");
    }

    #[test]
    fn every_day_of_four_centuries_matches_a_plain_calendar_walk() {
        let (mut y, mut m, mut d) = (1970u64, 1u64, 1u64);
        for day in 0..196_097 {
            assert_eq!(seconds_z(day * 86_400_000 + 3_723_000), format!("{y:04}-{m:02}-{d:02}T01:02:03Z"));
            let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
            let length = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m as usize - 1];
            d += 1;
            if d > length {
                (d, m) = (1, m + 1);
            }
            if m > 12 {
                (m, y) = (1, y + 1);
            }
        }
    }
}

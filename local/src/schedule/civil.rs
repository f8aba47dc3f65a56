//! Conversions between days since the Unix epoch and proleptic Gregorian dates (UTC).
//!
//! Howard Hinnant's `days_from_civil` / `civil_from_days`: exact for every date, no tables, and
//! enough for cron matching without pulling in a date-time crate.

/// Days since 1970-01-01 of the date `year-month-day`; the inverse of `civil_from_days`, which
/// the tests use to check it.
#[cfg(test)]
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date `(year, month 1..=12, day 1..=31)` of `days` since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = u32::try_from(day_of_year - (153 * mp + 2) / 5 + 1).expect("day in 1..=31");
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).expect("month in 1..=12");
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Day of the week of `days` since 1970-01-01, 0 = Sunday .. 6 = Saturday.
pub fn weekday(days: i64) -> u32 {
    // 1970-01-01 was a Thursday.
    u32::try_from((days + 4).rem_euclid(7)).expect("0..7")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates_round_trip() {
        for (date, days) in [
            ((1970, 1, 1), 0),
            ((2000, 2, 29), 11_016),
            ((2026, 12, 3), 20_790),
            ((1969, 12, 31), -1),
        ] {
            assert_eq!(days_from_civil(date.0, date.1, date.2), days, "{date:?}");
            assert_eq!(civil_from_days(days), date, "{days}");
        }
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        let start = days_from_civil(1900, 1, 1);
        let end = days_from_civil(2300, 1, 1);
        let mut previous = civil_from_days(start - 1);
        for days in start..end {
            let date = civil_from_days(days);
            assert!(date > previous, "{date:?} after {previous:?}");
            assert_eq!(days_from_civil(date.0, date.1, date.2), days);
            previous = date;
        }
    }

    #[test]
    fn weekdays_match_the_calendar() {
        assert_eq!(weekday(0), 4, "1970-01-01 was a Thursday");
        assert_eq!(weekday(days_from_civil(2026, 12, 3)), 4, "Thursday");
        assert_eq!(weekday(days_from_civil(2026, 12, 6)), 0, "Sunday");
        assert_eq!(weekday(-1), 3, "1969-12-31 was a Wednesday");
    }
}

//! AWS six-field cron expressions: `minutes hours day-of-month month day-of-week year`, in UTC.
//!
//! Supported per field: `*`, single values, lists (`1,15`), ranges (`MON-FRI`), steps (`0/15`,
//! `*/5`, `10-50/10`), month names `JAN`..`DEC` and day names `SUN`..`SAT` (day-of-week numbers
//! are AWS's 1 = Sunday .. 7 = Saturday), and `?` in exactly one of the two day fields, as AWS
//! requires. Not supported, and rejected when parsed so a schedule never silently misfires: `L`
//! (last), `W` (nearest weekday) and `#` (nth weekday of the month), and wrapping ranges such as
//! `FRI-MON`.

use super::civil;

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const MINUTES_PER_DAY: i64 = 24 * 60;
/// EventBridge accepts years up to 2199; no schedule fires after it.
const LAST_YEAR: i64 = 2199;

/// A parsed cron expression; `next_minute_after` says when it fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: Field,
    hours: Field,
    days: DayRule,
    months: Field,
    years: Field,
}

/// AWS lets exactly one of day-of-month and day-of-week restrict the day; the other is `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DayRule {
    OfMonth(Field),
    /// Values are AWS day numbers: 1 = Sunday .. 7 = Saturday.
    OfWeek(Field),
}

/// The set of values a field allows, within the field's range `min..=min + allowed.len() - 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    min: u32,
    allowed: Vec<bool>,
}

/// What one field accepts: its range and the names that stand for numbers.
struct FieldKind {
    label: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: FieldKind = FieldKind {
    label: "minutes",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldKind = FieldKind {
    label: "hours",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: FieldKind = FieldKind {
    label: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldKind = FieldKind {
    label: "month",
    min: 1,
    max: 12,
    names: &MONTHS,
};
const DAY_OF_WEEK: FieldKind = FieldKind {
    label: "day-of-week",
    min: 1,
    max: 7,
    names: &DAYS,
};
const YEAR: FieldKind = FieldKind {
    label: "year",
    min: 1970,
    max: LAST_YEAR as u32,
    names: &[],
};

impl Cron {
    /// Parses the inside of `cron(...)`. The error says which field is wrong and why.
    pub fn parse(fields: &str) -> Result<Self, String> {
        let parts: Vec<&str> = fields.split_whitespace().collect();
        let [minutes, hours, dom, month, dow, year] = parts[..] else {
            return Err(format!(
                "expected 6 fields (minutes hours day-of-month month day-of-week year), found {}",
                parts.len()
            ));
        };
        let days = match (dom, dow) {
            ("?", "?") => return Err("only one of day-of-month and day-of-week may be `?`".into()),
            ("?", dow) => DayRule::OfWeek(Field::parse(dow, &DAY_OF_WEEK)?),
            (dom, "?") => DayRule::OfMonth(Field::parse(dom, &DAY_OF_MONTH)?),
            _ => {
                return Err(
                    "one of day-of-month and day-of-week must be `?` (AWS does not combine them)"
                        .into(),
                );
            }
        };
        Ok(Self {
            minutes: Field::parse(minutes, &MINUTE)?,
            hours: Field::parse(hours, &HOUR)?,
            days,
            months: Field::parse(month, &MONTH)?,
            years: Field::parse(year, &YEAR)?,
        })
    }

    /// The first whole minute, counted from the Unix epoch, strictly after minute `after`
    /// (also counted from the epoch) that the expression matches; `None` if none before 2200.
    pub fn next_minute_after(&self, after: i64) -> Option<i64> {
        let first = after + 1;
        let mut day = first.div_euclid(MINUTES_PER_DAY);
        let mut from_minute = first.rem_euclid(MINUTES_PER_DAY);
        loop {
            let (year, month, day_of_month) = civil::civil_from_days(day);
            if year > LAST_YEAR {
                return None;
            }
            if self.matches_day(day, year, month, day_of_month)
                && let Some(minute) = self.first_minute_of_day_from(from_minute)
            {
                return Some(day * MINUTES_PER_DAY + minute);
            }
            day += 1;
            from_minute = 0;
        }
    }

    fn matches_day(&self, day: i64, year: i64, month: u32, day_of_month: u32) -> bool {
        let year_matches = u32::try_from(year).is_ok_and(|year| self.years.contains(year));
        let day_matches = match &self.days {
            DayRule::OfMonth(days) => days.contains(day_of_month),
            DayRule::OfWeek(days) => days.contains(civil::weekday(day) + 1),
        };
        year_matches && self.months.contains(month) && day_matches
    }

    fn first_minute_of_day_from(&self, from: i64) -> Option<i64> {
        (from..MINUTES_PER_DAY).find(|minute| {
            let hour = u32::try_from(minute / 60).expect("hour below 24");
            let minute = u32::try_from(minute % 60).expect("minute below 60");
            self.hours.contains(hour) && self.minutes.contains(minute)
        })
    }
}

impl Field {
    fn parse(text: &str, kind: &FieldKind) -> Result<Self, String> {
        let bad = |why: String| format!("{} field `{text}`: {why}", kind.label);
        if text.contains(['L', 'W', '#']) && !is_name_list(text, kind) {
            return Err(bad(
                "L, W and # are not supported by the local runtime".into()
            ));
        }
        let mut allowed = vec![false; (kind.max - kind.min + 1) as usize];
        for item in text.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => {
                    let step: u32 =
                        step.parse().ok().filter(|&s| s > 0).ok_or_else(|| {
                            bad(format!("step `{step}` is not a positive number"))
                        })?;
                    (range, step)
                }
                None => (item, 1),
            };
            let (low, high) = if range == "*" {
                (kind.min, kind.max)
            } else if let Some((low, high)) = range.split_once('-') {
                (
                    kind.value(low).map_err(bad)?,
                    kind.value(high).map_err(bad)?,
                )
            } else {
                let start = kind.value(range).map_err(bad)?;
                // `5/15` means "from 5, every 15"; a bare value is just itself.
                (start, if step > 1 { kind.max } else { start })
            };
            if low > high {
                return Err(bad(format!(
                    "range {low}-{high} runs backwards (wrapping ranges are not supported)"
                )));
            }
            for value in (low..=high).step_by(step as usize) {
                allowed[(value - kind.min) as usize] = true;
            }
        }
        Ok(Self {
            min: kind.min,
            allowed,
        })
    }

    fn contains(&self, value: u32) -> bool {
        value
            .checked_sub(self.min)
            .and_then(|i| self.allowed.get(i as usize))
            .copied()
            .unwrap_or(false)
    }
}

/// True when every letter in `text` belongs to a month or day name (`JUL`, `WED`, `TUE-SAT`),
/// so the `L`/`W` check does not trip over names that merely contain those letters.
fn is_name_list(text: &str, kind: &FieldKind) -> bool {
    !text.contains('#')
        && text
            .split([',', '-', '/'])
            .filter(|token| token.chars().any(|c| c.is_ascii_alphabetic()))
            .all(|token| kind.names.iter().any(|n| n.eq_ignore_ascii_case(token)))
}

impl FieldKind {
    fn value(&self, token: &str) -> Result<u32, String> {
        let value = match token.parse::<u32>() {
            Ok(value) => value,
            Err(_) => self
                .names
                .iter()
                .position(|name| name.eq_ignore_ascii_case(token))
                .map(|i| self.min + i as u32)
                .ok_or_else(|| format!("`{token}` is not a number or a known name"))?,
        };
        if (self.min..=self.max).contains(&value) {
            Ok(value)
        } else {
            Err(format!("{value} is outside {}..={}", self.min, self.max))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(text: &str, kind: &FieldKind) -> Vec<u32> {
        let field = Field::parse(text, kind).expect(text);
        (kind.min..=kind.max)
            .filter(|v| field.contains(*v))
            .collect()
    }

    #[test]
    fn fields_accept_values_lists_ranges_and_steps() {
        assert_eq!(field("5", &MINUTE), [5]);
        assert_eq!(field("0,15,45", &MINUTE), [0, 15, 45]);
        assert_eq!(field("0/15", &MINUTE), [0, 15, 30, 45]);
        assert_eq!(field("*/20", &MINUTE), [0, 20, 40]);
        assert_eq!(field("10-20/5", &MINUTE), [10, 15, 20]);
        assert_eq!(field("22-23,1", &HOUR), [1, 22, 23]);
        assert_eq!(field("*", &HOUR).len(), 24);
    }

    #[test]
    fn fields_accept_names_in_any_case() {
        assert_eq!(field("MON-FRI", &DAY_OF_WEEK), [2, 3, 4, 5, 6]);
        assert_eq!(field("sun,Sat", &DAY_OF_WEEK), [1, 7]);
        assert_eq!(field("JAN,jul-AUG", &MONTH), [1, 7, 8]);
        assert_eq!(
            field("WED", &DAY_OF_WEEK),
            [4],
            "W inside a name is not the W flag"
        );
    }

    #[test]
    fn fields_reject_what_they_cannot_honour() {
        for (text, kind, expected) in [
            ("60", &MINUTE, "outside 0..=59"),
            ("0/0", &MINUTE, "step `0`"),
            ("L", &DAY_OF_MONTH, "not supported"),
            ("15W", &DAY_OF_MONTH, "not supported"),
            ("2#1", &DAY_OF_WEEK, "not supported"),
            ("6L", &DAY_OF_WEEK, "not supported"),
            ("FRI-MON", &DAY_OF_WEEK, "wrapping"),
            ("FOO", &MONTH, "not a number or a known name"),
            ("0", &DAY_OF_MONTH, "outside 1..=31"),
            ("2200", &YEAR, "outside 1970..=2199"),
        ] {
            let err = Field::parse(text, kind).expect_err(text);
            assert!(err.contains(expected), "{text}: {err}");
            assert!(err.contains(kind.label), "{text}: {err}");
        }
    }

    #[test]
    fn expressions_need_six_fields_and_one_question_mark() {
        assert!(Cron::parse("0 12 * * ?").unwrap_err().contains("6 fields"));
        assert!(
            Cron::parse("0 12 * * * *")
                .unwrap_err()
                .contains("must be `?`")
        );
        assert!(
            Cron::parse("0 12 ? * ? *")
                .unwrap_err()
                .contains("only one")
        );
        assert!(Cron::parse("0 12 * * ? *").is_ok());
        assert!(Cron::parse("0 12 ? * MON *").is_ok());
    }
}

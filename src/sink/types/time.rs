//! Timestamps and dates: RFC 3339 text or epoch numbers, to microseconds
//! since 1970-01-01 UTC, and back to text in each backend's form.

use super::number::Decimal;
use super::Target;
use crate::codec::{civil_from_days, days_from_civil};

/// Microseconds since 1970-01-01T00:00:00Z, years 0001 to 9999.
pub type Micros = i64;

const MIN: Micros = -62_135_596_800_000_000; // 0001-01-01T00:00:00Z
const MAX: Micros = 253_402_300_799_999_999; // 9999-12-31T23:59:59.999999Z

fn num(b: &[u8]) -> Option<i64> {
    if b.is_empty() {
        return None;
    }
    b.iter().try_fold(0_i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

/// `YYYY-MM-DD` (a real calendar day) as days since 1970-01-01.
pub fn date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (num(&b[..4])?, num(&b[5..7])?, num(&b[8..10])?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if y == 0 || !(1..=12).contains(&m) || d < 1 || d > days_in[(m - 1) as usize] {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// RFC 3339 (`T`, `t` or a space between date and time; any number of
/// fractional digits, those past the sixth zeros; `Z` or `±HH:MM`, or no
/// offset for UTC). Returns the instant and its fractional digits (trailing zeros aside).
pub fn rfc3339(s: &str) -> Result<(Micros, u8), String> {
    let bad = || format!("`{s}` is not an RFC 3339 timestamp");
    let b = s.as_bytes();
    if b.len() < 19 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let days = date(&s[..10]).ok_or_else(bad)?;
    let (h, mi, sec) = (num(&b[11..13]), num(&b[14..16]), num(&b[17..19]));
    let (Some(h), Some(mi), Some(sec)) = (h, mi, sec) else {
        return Err(bad());
    };
    if h > 23 || mi > 59 || sec > 59 {
        return Err(bad());
    }
    let mut rest = &b[19..];
    let (mut micros, mut digits) = (0, 0);
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return Err(bad());
        }
        let (kept, beyond) = frac[..n].split_at(n.min(6));
        if beyond.iter().any(|&c| c != b'0') {
            return Err(format!("`{s}` is more precise than microseconds"));
        }
        micros = num(kept).ok_or_else(bad)? * 10_i64.pow(6 - kept.len() as u32);
        digits = kept.len() - kept.iter().rev().take_while(|&&c| c == b'0').count();
        rest = &frac[n..];
    }
    let offset = match rest {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (oh, om) = (num(&[*h1, *h2]), num(&[*m1, *m2]));
            let (Some(oh), Some(om)) = (oh, om) else {
                return Err(bad());
            };
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            let secs = oh * 3600 + om * 60;
            if *sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return Err(bad()),
    };
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
    let at = secs * 1_000_000 + micros;
    if !(MIN..=MAX).contains(&at) {
        return Err(format!("`{s}` is outside years 0001 to 9999"));
    }
    Ok((at, digits as u8))
}

/// An epoch number's text in units of 10^-`unit_digits` seconds (0: seconds,
/// 3: milliseconds, 6: microseconds), exactly.
pub fn epoch(text: &str, unit_digits: u32) -> Result<(Micros, u8), String> {
    let d = Decimal::parse(text).ok_or_else(|| format!("`{text}` is not a number"))?;
    let scale = 6 - unit_digits as usize; // digits of a microsecond within the unit
    if d.frac.len() > scale {
        return Err(format!("`{text}` is more precise than microseconds"));
    }
    let out_of_range = || format!("`{text}` is outside years 0001 to 9999");
    let digits = format!("{}{:0<scale$}", d.int, d.frac);
    let magnitude: i64 = if digits.trim_start_matches('0').is_empty() {
        0
    } else if digits.len() > 18 {
        return Err(out_of_range());
    } else {
        digits.parse().map_err(|_| out_of_range())?
    };
    let at = if d.negative { -magnitude } else { magnitude };
    if !(MIN..=MAX).contains(&at) {
        return Err(out_of_range());
    }
    let frac_digits = if at % 1_000_000 == 0 {
        0
    } else {
        let f = format!("{:06}", at.rem_euclid(1_000_000));
        f.trim_end_matches('0').len() as u8
    };
    Ok((at, frac_digits))
}

/// The instant as `target` reads it: PostgreSQL `2024-01-02T03:04:05.123456Z`
/// (no `Z` without zone), MySQL/MariaDB and SQLite `2024-01-02 03:04:05.123456`;
/// always UTC, with `precision` fractional digits.
pub fn format(at: Micros, zone: bool, precision: u8, target: Target) -> String {
    let (days, in_day) = (at.div_euclid(86_400_000_000), at.rem_euclid(86_400_000_000));
    let (y, m, d) = civil_from_days(days);
    let secs = in_day / 1_000_000;
    let (h, mi, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let sep = if target.iso_timestamps { 'T' } else { ' ' };
    let mut out = format!("{y:04}-{m:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}");
    if precision > 0 {
        let frac = format!("{:06}", in_day % 1_000_000);
        out.push('.');
        out.push_str(&frac[..usize::from(precision.min(6))]);
    }
    if zone && target.iso_timestamps {
        out.push('Z');
    }
    out
}

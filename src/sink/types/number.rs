//! Exact decimal text, without a floating-point round trip.

/// A decimal number as digit strings: `int` without leading zeros, `frac`
/// without trailing zeros (so their lengths are the digits the value needs).
#[derive(Debug, PartialEq, Eq)]
pub struct Decimal {
    pub negative: bool,
    pub int: String,
    pub frac: String,
}

impl Decimal {
    /// `[+-]digits[.digits][e[+-]digits]`, as JSON numbers and decimal strings are written.
    pub fn parse(text: &str) -> Option<Self> {
        let (negative, rest) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let (mantissa, exp) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], rest[i + 1..].parse::<i32>().ok()?),
            None => (rest, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
            return None;
        }
        if exp.unsigned_abs() > 10_000 {
            return None;
        }
        // Move the decimal point by `exp`.
        let all: String = [int, frac].concat();
        let point = int.len() as i64 + i64::from(exp);
        let (int, frac) = if point <= 0 {
            (
                String::new(),
                "0".repeat(point.unsigned_abs() as usize) + &all,
            )
        } else if point as usize >= all.len() {
            (
                all.clone() + &"0".repeat(point as usize - all.len()),
                String::new(),
            )
        } else {
            (
                all[..point as usize].to_string(),
                all[point as usize..].to_string(),
            )
        };
        let int = int.trim_start_matches('0').to_string();
        let frac = frac.trim_end_matches('0').to_string();
        let negative = negative && !(int.is_empty() && frac.is_empty());
        Some(Self {
            negative,
            int,
            frac,
        })
    }

    /// Significant digits (leading and trailing zeros aside).
    pub fn significant(&self) -> usize {
        let all = [self.int.as_str(), self.frac.as_str()].concat();
        all.trim_start_matches('0').trim_end_matches('0').len()
    }

    /// Plain text: `-12.5`, `0.001`, `0`.
    pub fn plain(&self) -> String {
        let mut out = String::with_capacity(self.int.len() + self.frac.len() + 3);
        if self.negative {
            out.push('-');
        }
        out.push_str(if self.int.is_empty() { "0" } else { &self.int });
        if !self.frac.is_empty() {
            out.push('.');
            out.push_str(&self.frac);
        }
        out
    }
}

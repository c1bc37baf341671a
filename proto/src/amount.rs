//! Amounts: u64 base units, shown as decimals with the chain's `decimals`.
//!
//! With 6 decimals, `"1.5"` is 1 500 000 base units. Parsing is strict so that
//! what a person typed in a chat is exactly what is paid: digits, optionally a
//! point and 1..=decimals digits. No sign, no exponent, no separators, no
//! whitespace, no bare `"."`, `"1."` or `".5"`.

/// Decimals used when genesis does not say otherwise.
pub const DEFAULT_DECIMALS: u8 = 6;

/// Most decimals a chain may use (10^19 would not fit in a u64).
pub const MAX_DECIMALS: u8 = 18;

/// Why a decimal amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Nothing to parse.
    #[error("amount is empty")]
    Empty,
    /// A leading minus sign.
    #[error("amount cannot be negative")]
    Negative,
    /// Scientific notation.
    #[error("amount cannot use an exponent; write all digits")]
    Exponent,
    /// A character that is not a digit or the decimal point.
    #[error("invalid character {found:?} at position {position} in amount")]
    InvalidChar {
        /// The offending character.
        found: char,
        /// Its byte offset.
        position: usize,
    },
    /// A point with no digits on one of its sides, or two points.
    #[error("amount must have digits on both sides of a single decimal point")]
    MissingDigits,
    /// More fractional digits than the chain's decimals.
    #[error("amount has {found} decimals, at most {max} allowed")]
    TooManyDecimals {
        /// Fractional digits given.
        found: usize,
        /// The chain's decimals.
        max: u8,
    },
    /// The value does not fit in u64 base units.
    #[error("amount is too large (maximum {max} base units)")]
    Overflow {
        /// u64::MAX.
        max: u64,
    },
    /// The chain's decimals are out of range.
    #[error("decimals {decimals} out of range 0..={MAX_DECIMALS}")]
    BadDecimals {
        /// The refused decimals.
        decimals: u8,
    },
}

/// Parses a decimal amount such as `"12.5"` into base units.
pub fn parse_amount(s: &str, decimals: u8) -> Result<u64, AmountError> {
    if decimals > MAX_DECIMALS {
        return Err(AmountError::BadDecimals { decimals });
    }
    if s.is_empty() {
        return Err(AmountError::Empty);
    }
    if s.starts_with('-') {
        return Err(AmountError::Negative);
    }
    let mut points = 0;
    for (position, found) in s.char_indices() {
        match found {
            '0'..='9' => {}
            '.' => points += 1,
            'e' | 'E' => return Err(AmountError::Exponent),
            _ => return Err(AmountError::InvalidChar { found, position }),
        }
    }
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s, ""),
    };
    if points > 1 || whole.is_empty() || (points == 1 && frac.is_empty()) {
        return Err(AmountError::MissingDigits);
    }
    if frac.len() > usize::from(decimals) {
        return Err(AmountError::TooManyDecimals {
            found: frac.len(),
            max: decimals,
        });
    }
    let overflow = AmountError::Overflow { max: u64::MAX };
    let mut units: u64 = 0;
    let padding = usize::from(decimals) - frac.len();
    let digits = whole
        .bytes()
        .chain(frac.bytes())
        .chain(std::iter::repeat_n(b'0', padding));
    for digit in digits {
        units = units
            .checked_mul(10)
            .and_then(|u| u.checked_add(u64::from(digit - b'0')))
            .ok_or_else(|| overflow.clone())?;
    }
    Ok(units)
}

/// Formats base units as a decimal with no trailing fractional zeros:
/// `1_500_000` with 6 decimals is `"1.5"`, `2_000_000` is `"2"`.
///
/// # Panics
/// If `decimals` > [`MAX_DECIMALS`]; genesis validation rules that out.
pub fn format_amount(units: u64, decimals: u8) -> String {
    assert!(
        decimals <= MAX_DECIMALS,
        "decimals {decimals} above {MAX_DECIMALS}"
    );
    let scale = 10u64.pow(u32::from(decimals));
    let whole = units / scale;
    let frac = units % scale;
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:0width$}", width = usize::from(decimals));
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_amounts() {
        let cases = [
            ("0", 0),
            ("1", 1_000_000),
            ("1.5", 1_500_000),
            ("0.000001", 1),
            ("12.340000", 12_340_000),
            ("007", 7_000_000),
            ("18446744073709.551615", u64::MAX),
        ];
        for (s, want) in cases {
            assert_eq!(parse_amount(s, 6), Ok(want), "{s}");
        }
        assert_eq!(parse_amount("18446744073709551615", 0), Ok(u64::MAX));
    }

    #[test]
    fn refuses_invalid_amounts() {
        use AmountError::*;
        let cases = [
            ("", Empty),
            ("-1", Negative),
            ("1e6", Exponent),
            ("1E6", Exponent),
            (
                "+1",
                InvalidChar {
                    found: '+',
                    position: 0,
                },
            ),
            (
                " 1",
                InvalidChar {
                    found: ' ',
                    position: 0,
                },
            ),
            (
                "1,5",
                InvalidChar {
                    found: ',',
                    position: 1,
                },
            ),
            (
                "1_000",
                InvalidChar {
                    found: '_',
                    position: 1,
                },
            ),
            (".", MissingDigits),
            (".5", MissingDigits),
            ("1.", MissingDigits),
            ("1.2.3", MissingDigits),
            ("0.0000001", TooManyDecimals { found: 7, max: 6 }),
            ("18446744073709.551616", Overflow { max: u64::MAX }),
            ("99999999999999999999", Overflow { max: u64::MAX }),
        ];
        for (s, want) in cases {
            assert_eq!(parse_amount(s, 6), Err(want), "{s}");
        }
        assert_eq!(parse_amount("1", 19), Err(BadDecimals { decimals: 19 }));
        assert_eq!(
            parse_amount("1.5", 0),
            Err(TooManyDecimals { found: 1, max: 0 })
        );
    }

    #[test]
    fn formats_amounts() {
        assert_eq!(format_amount(0, 6), "0");
        assert_eq!(format_amount(1, 6), "0.000001");
        assert_eq!(format_amount(1_500_000, 6), "1.5");
        assert_eq!(format_amount(2_000_000, 6), "2");
        assert_eq!(format_amount(u64::MAX, 6), "18446744073709.551615");
        assert_eq!(format_amount(u64::MAX, 0), "18446744073709551615");
        assert_eq!(format_amount(u64::MAX, 18), "18.446744073709551615");
    }

    #[test]
    fn format_then_parse_round_trips() {
        for units in [0, 1, 9, 10, 123_456_789, u64::MAX - 1, u64::MAX] {
            for decimals in [0, 2, 6, 18] {
                assert_eq!(
                    parse_amount(&format_amount(units, decimals), decimals),
                    Ok(units)
                );
            }
        }
    }
}

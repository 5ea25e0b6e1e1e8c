//! Keys whose value is one of a few names (`mode = "upsert"`). Contract: an
//! unknown name fails start-up with the valid names and, when one is close,
//! the nearest ("did you mean"), as clap does for flags; the key is added by
//! the loader. Each such enum lists its names once, in [`named!`], which both
//! parses them and reports them, so the two cannot drift.

/// Implements `Deserialize` for an enum from its names:
/// `named!(SinkMode { Insert = "insert", Upsert = "upsert" });`.
macro_rules! named {
    ($ty:ident { $($variant:ident = $name:literal),+ $(,)? }) => {
        impl $ty {
            /// The names this key accepts.
            pub const NAMES: &'static [&'static str] = &[$($name),+];
        }

        #[cfg(test)]
        impl schemars::JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "enum": [$($name),+] })
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let given = <String as serde::Deserialize>::deserialize(d)?;
                match given.as_str() {
                    $($name => Ok($ty::$variant),)+
                    other => Err(<D::Error as serde::de::Error>::custom(
                        $crate::config::names::unknown(other, $ty::NAMES),
                    )),
                }
            }
        }
    };
}
pub(crate) use named;

/// The error for `given` when only `names` are valid.
pub fn unknown(given: &str, names: &[&str]) -> String {
    let valid = names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    match nearest(given, names) {
        Some(near) => {
            format!("unknown value \"{given}\" (did you mean \"{near}\"? valid: {valid})")
        }
        None => format!("unknown value \"{given}\" (valid: {valid})"),
    }
}

/// The name closest to `given`, if it is close enough to be a typo: at most
/// a third of its letters (and at least one) edited, ignoring case.
fn nearest<'a>(given: &str, names: &[&'a str]) -> Option<&'a str> {
    let given = given.to_lowercase();
    names
        .iter()
        .map(|n| (edits(&given, n), *n))
        .filter(|(d, n)| *d <= (n.chars().count() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// Levenshtein distance (insertions, deletions, substitutions).
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_names_the_nearest_value_and_every_valid_one() {
        assert_eq!(
            unknown("upsrt", &["insert", "upsert"]),
            r#"unknown value "upsrt" (did you mean "upsert"? valid: "insert", "upsert")"#
        );
    }

    #[test]
    fn a_value_far_from_every_name_gets_no_guess() {
        assert_eq!(
            unknown("banana", &["insert", "upsert"]),
            r#"unknown value "banana" (valid: "insert", "upsert")"#
        );
    }

    #[test]
    fn case_and_separators_count_as_typos() {
        assert_eq!(nearest("Upsert", &["insert", "upsert"]), Some("upsert"));
        assert_eq!(
            nearest("exactly_once", &["exactly-once", "at-least-once"]),
            Some("exactly-once")
        );
        assert_eq!(
            nearest("epoch-ms", &["rfc3339", "epoch_ms"]),
            Some("epoch_ms")
        );
    }

    #[test]
    fn edits_counts_insertions_deletions_and_substitutions() {
        assert_eq!(edits("", "abc"), 3);
        assert_eq!(edits("kitten", "sitting"), 3);
        assert_eq!(edits("same", "same"), 0);
    }
}

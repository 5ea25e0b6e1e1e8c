//! Column type names, as each database describes them, parsed into [`ColumnType`].
//!
//! Guarantee: a name this parser does not recognise (or whose arguments it
//! cannot read) is [`ColumnType::Unknown`], whose values pass through
//! unchanged for the database to convert; a recognised name never loses a
//! limit it declares (length, precision, scale, fractional seconds).

use super::{ColumnType, Target};

/// Parses `data_type` as `target`'s catalogue spells it (PostgreSQL's
/// `format_type`, MySQL's `COLUMN_TYPE`, SQLite's declared type).
pub fn parse(data_type: &str, target: Target) -> ColumnType {
    let lower = data_type.trim().to_ascii_lowercase();
    if target.arrays {
        if let Some(inner) = lower.strip_suffix("[]") {
            return match parse(inner, target) {
                ColumnType::Unknown => ColumnType::Unknown,
                element => ColumnType::Array(Box::new(element)),
            };
        }
    }
    let Some((base, args, unsigned)) = split(&lower) else {
        return ColumnType::Unknown;
    };
    parse_base(&base, &args, unsigned, target).unwrap_or(ColumnType::Unknown)
}

/// `varchar(10) unsigned` → (`varchar`, `[10]`, unsigned); the arguments may sit
/// mid-name (`timestamp(3) with time zone`). `None` when an argument is not a number.
fn split(name: &str) -> Option<(String, Vec<u32>, bool)> {
    let (mut base, mut args) = (String::with_capacity(name.len()), String::new());
    let mut depth = 0;
    for c in name.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if depth > 0 => args.push(c),
            _ => base.push(c),
        }
    }
    let mut words: Vec<&str> = base.split_whitespace().collect();
    let unsigned = words.contains(&"unsigned");
    words.retain(|w| *w != "unsigned" && *w != "zerofill");
    let args = if args.trim().is_empty() {
        Vec::new()
    } else {
        args.split(',')
            .map(|a| a.trim().parse().ok())
            .collect::<Option<Vec<u32>>>()?
    };
    Some((words.join(" "), args, unsigned))
}

fn int(bits: u32, unsigned: bool) -> ColumnType {
    if unsigned {
        ColumnType::Int {
            min: 0,
            max: (1_i128 << bits) - 1,
        }
    } else {
        ColumnType::Int {
            min: -(1_i128 << (bits - 1)),
            max: (1_i128 << (bits - 1)) - 1,
        }
    }
}

fn parse_base(base: &str, args: &[u32], unsigned: bool, target: Target) -> Option<ColumnType> {
    let first = args.first().map(|&n| n as usize);
    let sqlite = target.int_affinity;
    Some(match base {
        // SQLite stores 64-bit integers under INT and INTEGER (and any other
        // name containing "int"); the narrower names keep their declared width.
        "integer" | "int" if sqlite => int(64, false),
        "tinyint" if target.tinyint1_is_bool && args == [1] => ColumnType::Bool,
        "tinyint" => int(8, unsigned),
        "smallint" | "int2" | "smallserial" => int(16, unsigned),
        "mediumint" => int(24, unsigned),
        "integer" | "int" | "int4" | "serial" => int(32, unsigned),
        "bigint" | "int8" | "bigserial" => int(64, unsigned),
        "numeric" | "decimal" | "dec" | "fixed" => decimal(args, target)?,
        "real" if target.real_is_single => ColumnType::Float { single: true },
        "float4" => ColumnType::Float { single: true },
        // MySQL: FLOAT(p) with p > 24 is a DOUBLE.
        "float" if target.float_by_precision => ColumnType::Float {
            single: first.is_none_or(|p| p <= 24),
        },
        "float" | "real" | "double" | "double precision" | "float8" => {
            ColumnType::Float { single: false }
        }
        "boolean" | "bool" => ColumnType::Bool,
        "text" | "character varying" | "varchar" | "character" | "char" | "bpchar" | "nvarchar"
        | "nchar" | "varchar2" | "clob" | "tinytext" | "mediumtext" => ColumnType::Text {
            max_chars: first,
            structured: false,
        },
        // MariaDB's JSON is an alias of LONGTEXT (with a json_valid check).
        "longtext" => ColumnType::Text {
            max_chars: None,
            structured: target.longtext_holds_json,
        },
        "timestamp with time zone" | "timestamptz" => timestamp(true, first, target),
        "timestamp without time zone" | "timestamp" | "datetime" => timestamp(false, first, target),
        "date" => ColumnType::Date,
        "uuid" => ColumnType::Uuid,
        "json" | "jsonb" => ColumnType::Json,
        "bytea" | "blob" | "tinyblob" | "mediumblob" | "longblob" => {
            ColumnType::Bytes { max_len: None }
        }
        "varbinary" | "binary" => ColumnType::Bytes { max_len: first },
        _ if sqlite && base.contains("int") => int(64, false),
        _ => return None,
    })
}

fn decimal(args: &[u32], target: Target) -> Option<ColumnType> {
    Some(match (args, target) {
        ([], _) => ColumnType::Decimal {
            precision: target.bare_decimal_precision,
            scale: 0,
        },
        ([p], _) => ColumnType::Decimal {
            precision: Some(*p),
            scale: 0,
        },
        ([p, s], _) if s <= p => ColumnType::Decimal {
            precision: Some(*p),
            scale: *s,
        },
        _ => return None,
    })
}

fn timestamp(zone: bool, precision: Option<usize>, target: Target) -> ColumnType {
    let default = target.default_fraction_digits;
    ColumnType::Timestamp {
        zone,
        precision: precision.map_or(default, |p| p.min(6) as u8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG: Target = crate::db::postgres::dialect::TARGET;
    const MY: Target = crate::db::mysql::dialect::TARGET;
    const LITE: Target = crate::db::sqlite::dialect::TARGET;

    #[test]
    fn type_names_parse_per_dialect() {
        let cases: &[(&str, Target, ColumnType)] = &[
            (
                "smallint",
                PG,
                ColumnType::Int {
                    min: -32768,
                    max: 32767,
                },
            ),
            (
                "tinyint(3) unsigned",
                MY,
                ColumnType::Int { min: 0, max: 255 },
            ),
            ("tinyint(1)", MY, ColumnType::Bool),
            (
                "bigint(20) unsigned",
                MY,
                ColumnType::Int {
                    min: 0,
                    max: u64::MAX as i128,
                },
            ),
            (
                "INTEGER",
                LITE,
                ColumnType::Int {
                    min: i64::MIN as i128,
                    max: i64::MAX as i128,
                },
            ),
            (
                "numeric(10,4)",
                PG,
                ColumnType::Decimal {
                    precision: Some(10),
                    scale: 4,
                },
            ),
            (
                "numeric",
                PG,
                ColumnType::Decimal {
                    precision: None,
                    scale: 0,
                },
            ),
            (
                "decimal",
                MY,
                ColumnType::Decimal {
                    precision: Some(10),
                    scale: 0,
                },
            ),
            ("real", PG, ColumnType::Float { single: true }),
            ("double", MY, ColumnType::Float { single: false }),
            (
                "character varying(3)",
                PG,
                ColumnType::Text {
                    max_chars: Some(3),
                    structured: false,
                },
            ),
            (
                "longtext",
                MY,
                ColumnType::Text {
                    max_chars: None,
                    structured: true,
                },
            ),
            (
                "timestamp(3) with time zone",
                PG,
                ColumnType::Timestamp {
                    zone: true,
                    precision: 3,
                },
            ),
            (
                "timestamp without time zone",
                PG,
                ColumnType::Timestamp {
                    zone: false,
                    precision: 6,
                },
            ),
            (
                "datetime",
                MY,
                ColumnType::Timestamp {
                    zone: false,
                    precision: 0,
                },
            ),
            (
                "datetime(6)",
                MY,
                ColumnType::Timestamp {
                    zone: false,
                    precision: 6,
                },
            ),
            ("varbinary(4)", MY, ColumnType::Bytes { max_len: Some(4) }),
            ("integer[]", PG, ColumnType::Array(Box::new(int_type(32)))),
            ("interval", PG, ColumnType::Unknown),
            ("enum('a','b')", MY, ColumnType::Unknown),
            ("", LITE, ColumnType::Unknown),
        ];
        for (name, target, want) in cases {
            assert_eq!(&parse(name, *target), want, "{name} on {target:?}");
        }
    }

    fn int_type(bits: u32) -> ColumnType {
        ColumnType::Int {
            min: -(1 << (bits - 1)),
            max: (1 << (bits - 1)) - 1,
        }
    }
}

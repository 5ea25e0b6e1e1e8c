//! An aggregate step's columns, `n = "count()"`, `total = "sum(amount)"`:
//! parsed once with the config (a spec that does not parse fails start-up
//! naming its key); the state engine folds values by them.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    First,
    Last,
}

/// One output column: `column = func(field)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggSpec {
    pub column: String,
    pub func: Func,
    /// `None` only for `count()`.
    pub field: Option<String>,
}

impl AggSpec {
    /// Parses `func(field)`; the message says what is accepted.
    pub fn parse(column: &str, text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (name, rest) = text
            .split_once('(')
            .ok_or_else(|| format!("`{text}` is not of the form func(field)"))?;
        let field = rest
            .strip_suffix(')')
            .ok_or_else(|| format!("`{text}` lacks its closing parenthesis"))?
            .trim();
        let func = match name.trim() {
            "count" => Func::Count,
            "sum" => Func::Sum,
            "min" => Func::Min,
            "max" => Func::Max,
            "avg" => Func::Avg,
            "first" => Func::First,
            "last" => Func::Last,
            other => {
                return Err(format!(
                    "unknown function `{other}`; use count, sum, min, max, avg, first or last"
                ))
            }
        };
        if field.is_empty() && func != Func::Count {
            return Err(format!("`{text}` needs a field"));
        }
        Ok(Self {
            column: column.to_string(),
            func,
            field: (!field.is_empty()).then(|| field.to_string()),
        })
    }
}

/// Parses every `column = "func(field)"` of an aggregate step.
pub fn parse_all<'a>(
    columns: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<Vec<AggSpec>, (String, String)> {
    columns
        .into_iter()
        .map(|(c, t)| AggSpec::parse(c, t).map_err(|e| (c.clone(), e)))
        .collect()
}

//! Human durations ("250ms", "30s", "1m 30s") in config files.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{text}` is not a duration ({e}); write e.g. \"250ms\" or \"30s\""
        ))
    })
}

/// `Option<Duration>` in config files.
pub mod option {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => humantime::parse_duration(&text).map(Some).map_err(|e| {
                serde::de::Error::custom(format!(
                    "`{text}` is not a duration ({e}); write e.g. \"250ms\" or \"30s\""
                ))
            }),
        }
    }
}

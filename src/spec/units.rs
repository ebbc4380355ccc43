//! Durations ("250ms", "2s", "1m") and sizes ("64KiB", "8MiB") as the config writes them.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(text.trim())
            .map(Dur)
            .map_err(|e| {
                de::Error::custom(format!(
                    "invalid duration {text:?} ({e}); write it like \"250ms\", \"2s\" or \"1m\""
                ))
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size like \"64KiB\" or \"8MiB\", or a number of bytes")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                v.trim()
                    .parse::<bytesize::ByteSize>()
                    .map(|s| Size(s.as_u64()))
                    .map_err(|e| {
                        E::custom(format!(
                            "invalid size {v:?} ({e}); write it like \"64KiB\" or \"8MiB\""
                        ))
                    })
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

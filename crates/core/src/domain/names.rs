//! Optional personal names: trimmed, at most 100 characters, no control characters.

use crate::error::Error;

/// Normalises an optional name field; blank becomes `None`.
///
/// # Errors
/// `Validation` with code `invalid_name`.
pub fn parse_optional_name(
    field: &'static str,
    raw: Option<&str>,
) -> Result<Option<String>, Error> {
    let Some(value) = raw.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.chars().count() > 100 || value.chars().any(char::is_control) {
        return Err(Error::validation(
            field,
            "invalid_name",
            "Names have at most 100 printable characters.",
        ));
    }
    Ok(Some(value.to_owned()))
}

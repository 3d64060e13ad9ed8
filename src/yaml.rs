//! YAML → typed value, with the file, line, column and field path in every error (SPEC §2).

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::LoadError;

/// Parses `text` (read from `file`) into `T`. Unknown keys are rejected by `T`'s
/// `deny_unknown_fields`; the error carries the field path where serde stopped.
pub fn parse<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, LoadError> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let field = clean_path(&err.path().to_string());
        let inner = err.into_inner();
        let location = inner.location();
        LoadError {
            file: file.to_path_buf(),
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            field,
            message: strip_location(&inner.to_string()),
        }
    })
}

/// serde_path_to_error prints `.` for the root and `?` for untracked segments.
fn clean_path(path: &str) -> String {
    if path == "." || path == "?" {
        String::new()
    } else {
        path.to_string()
    }
}

/// serde_yaml appends " at line N column M"; the location is printed separately.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Finds the 1-based line of the first occurrence of `needle` as a YAML key or list item in
/// `text`, for errors found after parsing (references, patterns). Best effort: `None` when
/// the text does not show it plainly.
pub fn find_line(text: &str, needle: &str) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

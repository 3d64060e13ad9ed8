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
            message: strip_location(&inner.to_string(), &field),
            field,
        }
    })
}

/// serde_path_to_error prints `.` for the root and `?` for segments it could not follow.
fn clean_path(path: &str) -> String {
    path.split('.')
        .filter(|s| !s.is_empty() && *s != "?")
        .collect::<Vec<_>>()
        .join(".")
}

/// serde_yaml appends " at line N column M" and may start with the field path; both are
/// printed separately.
fn strip_location(message: &str, field: &str) -> String {
    let mut m = match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    };
    if let Some((prefix, rest)) = m.split_once(": ") {
        if !prefix.contains(' ') && !field.is_empty() && field.starts_with(prefix) {
            m = rest;
        }
    }
    one_line(m)
}

/// Joins a multi-line message (the cron crate draws a caret under the bad field) into one
/// line, dropping lines that are only markers.
pub fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| l.chars().any(char::is_alphanumeric))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A load error at a field path of a parsed document, located in its text where possible.
pub fn error_at(file: &Path, text: &str, field: &str, message: impl Into<String>) -> LoadError {
    let location = locate(text, field);
    LoadError {
        file: file.to_path_buf(),
        line: location.map(|l| l.0),
        column: location.map(|l| l.1),
        field: field.to_string(),
        message: one_line(&message.into()),
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

/// Improves a located line with the offending text: a value in a flow list that spans
/// lines sits below the line its key is on. Without a location, the first line showing the
/// text is used.
pub fn refine_line(text: &str, line: Option<usize>, needle: &str) -> Option<usize> {
    let Some(l) = line else {
        return find_line(text, needle);
    };
    let lines: Vec<&str> = text.lines().collect();
    if needle.is_empty() || lines.get(l - 1).is_some_and(|t| t.contains(needle)) {
        return Some(l);
    }
    (l..lines.len().min(l + 20))
        .find(|&i| lines[i].contains(needle))
        .map(|i| i + 1)
        .or(Some(l))
}

/// One step of a field path: `scope`, `commands`, `[2]`.
#[derive(Debug, PartialEq)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

fn steps(path: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Step::Key(key));
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            if let Ok(n) = idx.trim_end_matches(']').parse() {
                out.push(Step::Index(n));
            }
        }
    }
    out
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The 1-based line and column of a field path (`inventory[1].host_key`) in block-style
/// YAML, for errors found after parsing. Keys inside a one-line flow mapping resolve to that
/// line. Best effort: `None` when the layout is not plain enough to follow.
pub fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    // The region being searched: lines [start, end), children indented more than `parent`.
    let (mut start, mut end, mut parent): (usize, usize, isize) = (0, lines.len(), -1);
    let mut found: Option<(usize, usize)> = None;
    for step in steps(path) {
        // A flow collection on the line found so far holds the rest of the path.
        if let Some((line, _)) = found {
            let item = lines[line].trim_start().trim_start_matches("- ");
            let value = item.split_once(':').map_or("", |(_, v)| v).trim_start();
            let flow = |t: &str| t.starts_with('{') || t.starts_with('[');
            if flow(item) || flow(value) {
                return found.map(|(l, c)| (l + 1, c + 1));
            }
        }
        match step {
            Step::Key(key) => {
                let hit = (start..end).find(|&i| {
                    let l = lines[i];
                    if !is_content(l) || (indent_of(l) as isize) <= parent && i != start {
                        return false;
                    }
                    let t = l.trim_start().trim_start_matches("- ");
                    t.starts_with(&format!("{key}:")) || t.starts_with(&format!("\"{key}\":"))
                })?;
                let l = lines[hit];
                let col = l.len() - l.trim_start().trim_start_matches("- ").len();
                found = Some((hit, col));
                parent = col as isize;
                start = hit + 1;
                end = (start..end)
                    .find(|&i| is_content(lines[i]) && indent_of(lines[i]) as isize <= parent)
                    .unwrap_or(end);
            }
            Step::Index(n) => {
                let items: Vec<usize> = (start..end)
                    .filter(|&i| is_content(lines[i]) && lines[i].trim_start().starts_with("- "))
                    .collect();
                let item_indent = items.iter().map(|&i| indent_of(lines[i])).min()?;
                let items: Vec<usize> = items
                    .into_iter()
                    .filter(|&i| indent_of(lines[i]) == item_indent)
                    .collect();
                let hit = *items.get(n)?;
                found = Some((hit, item_indent + 2));
                parent = item_indent as isize;
                start = hit;
                end = items.get(n + 1).copied().unwrap_or(end);
            }
        }
    }
    found.map(|(l, c)| (l + 1, c + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_follows_block_and_flow_yaml() {
        let text = "name: x\nparams:\n  threshold:\n    type: int\n    default: lots\nschedule:\n  cron: bad\n  timezone: Mars/Base\ninventory:\n  - name: a\n    host_key: k1\n  - name: b\n    host_key: k2\nusers:\n  - { name: u, party: p }\n  - { name: v, party: q }\nscope:\n  commands: [\"a\", \"\"]\n";
        assert_eq!(locate(text, "params.threshold.default"), Some((5, 5)));
        assert_eq!(locate(text, "schedule.cron"), Some((7, 3)));
        assert_eq!(locate(text, "schedule.timezone"), Some((8, 3)));
        assert_eq!(locate(text, "inventory[1].host_key"), Some((13, 5)));
        assert_eq!(locate(text, "inventory[0].host_key"), Some((11, 5)));
        assert_eq!(locate(text, "users[1].party").map(|l| l.0), Some(16));
        assert_eq!(locate(text, "scope.commands[1]").map(|l| l.0), Some(18));
        assert_eq!(locate(text, "nothing.here"), None);
    }
}

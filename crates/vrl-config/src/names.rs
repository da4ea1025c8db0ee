//! Names that become parts of paths: experiment, preset and run names, labels of models and methods.
//!
//! A name is joined into `runs/<experiment>/<run-id>/…`, so it must stay one plain path component:
//! ASCII letters, digits, `_`, `-` and `.`, not starting with `.` (no `..`, no hidden files, no `/`),
//! at most [`MAX_NAME_LEN`] bytes.
//!
//! ```
//! use vrl_config::check_name;
//!
//! assert!(check_name("experiment.name", "bocb-v2.1").is_ok());
//! let e = check_name("experiment.name", "../../x").unwrap_err();
//! assert!(e.contains("`../../x`") && e.contains("experiment.name"), "{e}");
//! ```

/// The longest name accepted (file systems allow 255 bytes in a component; a run id adds a suffix).
pub const MAX_NAME_LEN: usize = 100;

/// Checks that `name`, the value of `key`, is a plain name (see the [module docs](self)); the error
/// names the key, the value and what is allowed.
pub fn check_name(key: &str, name: &str) -> Result<(), String> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("it is longer than 100 characters")
    } else if name.starts_with('.') {
        Some("it starts with `.`")
    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        Some("it has a character other than ASCII letters, digits, `_`, `-` and `.`")
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(format!(
            "`{key}` = `{}` cannot be used as a name: {why} (a name becomes a directory or file name, so it \
             is ASCII letters, digits, `_`, `-` and `.`, not starting with `.`)",
            name.escape_default()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass() {
        for ok in ["mnist", "bocb_v2", "a-b.c", "X9", "smoke-00ff00ff00ff00ff"] {
            assert!(check_name("k", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn names_that_leave_their_directory_fail() {
        for bad in ["", ".", "..", "../x", "/some/dir", "a/b", "a\\b", ".hidden", "a b", "é", "a\0b", "C:x"]
        {
            let e = check_name("experiment.name", bad).unwrap_err();
            assert!(e.contains("`experiment.name`"), "{e}");
        }
        assert!(check_name("k", &"a".repeat(MAX_NAME_LEN)).is_ok());
        assert!(check_name("k", &"a".repeat(MAX_NAME_LEN + 1)).is_err());
        assert!(check_name("k", "a\nb").unwrap_err().contains("a\\nb"));
    }
}

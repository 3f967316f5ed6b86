//! `conf.d/*.toml` drop-ins next to the main config file (`/etc/wxcardd/conf.d/`), merged over
//! it in name order: a fleet-wide base in the main file (or `10-fleet.toml`), a till's own
//! scanners and id in `50-till.toml`, as configuration management tools lay them out.
//!
//! Merging: tables merge key by key, a later file's value replaces an earlier one's, except
//! `[[scanner]]` entries, which add up (a base's scanners plus a till's own). Each file alone
//! must parse with known keys and types, so such an error names its own file and line; the
//! merged result is validated once, as a single file is, and a bad value is reported at the
//! file and line that set it last.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::{Config, ConfigError, credential_headers, line_of};

/// The drop-in directory of a main config file: `conf.d` next to it.
pub fn dir_of(main: &Path) -> PathBuf {
    main.parent().unwrap_or(Path::new(".")).join("conf.d")
}

/// The drop-ins of `main`: `conf.d/*.toml` in name order (hidden files and editors' backups
/// ignored); none when the directory does not exist.
pub fn files(main: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let dir = dir_of(main);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ConfigError::Read { path: dir, source }),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "toml")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                && p.is_file()
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Loads `main` (whose text is given) with its drop-ins merged over it.
pub fn load(main: &Path, main_text: String, dropins: &[PathBuf]) -> Result<Config, ConfigError> {
    let mut sources = vec![(main.to_owned(), main_text)];
    for path in dropins {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        sources.push((path.clone(), text));
    }
    let parse_error = |path: &Path, e: &dyn std::fmt::Display| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    };
    let mut merged = Table::new();
    for (path, text) in &sources {
        // Alone first: syntax, unknown keys and types are named by this file and line.
        toml::from_str::<Config>(text).map_err(|e| parse_error(path, &e))?;
        let table: Table = toml::from_str(text).map_err(|e| parse_error(path, &e))?;
        merge(&mut merged, table);
    }
    // Through TOML text rather than `Value::try_into`: deserialising `Config` from a `Value`
    // compiled the whole config's serde code a second time, for `Value`'s deserializer
    // (issue 12's size; BENCHMARKS.md, "5. Size"). Each file parsed alone above, so this
    // rarely fails; its message has no line, as the text is not a file.
    let merged = toml::to_string(&merged).map_err(|e| parse_error(main, &e))?;
    let mut config: Config =
        toml::from_str(&merged).map_err(|e| parse_error(main, &e.message()))?;
    if config.api.headers_file.is_none() {
        config.api.headers_file = credential_headers();
    }
    if let Some((key, reason)) = config.problem() {
        let (path, line) = locate(&sources, &key);
        return Err(ConfigError::Invalid {
            path,
            line,
            key,
            reason,
        });
    }
    Ok(config)
}

/// Merges `over` into `base`: tables key by key, `scanner` arrays appended, other values
/// replaced.
fn merge(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (Some(Value::Array(b)), Value::Array(o)) if key == "scanner" => b.extend(o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The file (and line) that set `key` last; the main file when none sets it.
fn locate(sources: &[(PathBuf, String)], key: &str) -> (PathBuf, Option<usize>) {
    // `scanner[i].x`: the i-th scanner of the merged list, counted file by file.
    if let Some(rest) = key.strip_prefix("scanner[")
        && let Some((index, tail)) = rest.split_once(']')
        && let Ok(mut index) = index.parse::<usize>()
    {
        for (path, text) in sources {
            let here = toml::from_str::<Table>(text)
                .ok()
                .and_then(|t| t.get("scanner").and_then(Value::as_array).map(Vec::len))
                .unwrap_or(0);
            if index < here {
                return (
                    path.clone(),
                    line_of(text, &format!("scanner[{index}]{tail}")),
                );
            }
            index -= here;
        }
    }
    for (path, text) in sources.iter().rev() {
        if defines(text, key) {
            return (path.clone(), line_of(text, key));
        }
    }
    let (path, text) = &sources[0];
    (path.clone(), line_of(text, key))
}

/// Whether `text` sets the dotted `key` itself.
fn defines(text: &str, key: &str) -> bool {
    let Ok(table) = toml::from_str::<Table>(text) else {
        return false;
    };
    let mut value = &Value::Table(table);
    for part in key.split('.') {
        match value.as_table().and_then(|t| t.get(part)) {
            Some(v) => value = v,
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(main: &str, dropins: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wxcardd.toml");
        std::fs::write(&path, main).unwrap();
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        for (name, text) in dropins {
            std::fs::write(dir.path().join("conf.d").join(name), text).unwrap();
        }
        (dir, path)
    }

    const SCANNER: &str = "[[scanner]]\nname = \"NAME\"\ndevice = { kind = \"serial\", path = \"/dev/wxcard/NAME\" }\n";

    #[test]
    fn drop_ins_merge_in_name_order_and_scanners_add_up() {
        let (_dir, path) = setup(
            &format!(
                "[service]\nfresh_for_s = 100\n\n{}",
                SCANNER.replace("NAME", "base")
            ),
            &[
                (
                    "50-till.toml",
                    &format!(
                        "[till]\nid = \"till-0042\"\n\n[service]\nfresh_for_s = 300\n\n{}",
                        SCANNER.replace("NAME", "front")
                    ),
                ),
                (
                    "10-fleet.toml",
                    "[service]\nfresh_for_s = 200\nbreaker_failures = 5\n",
                ),
                ("99-ignored.toml.dpkg-old", "not toml at all ["),
                (".hidden.toml", "not toml at all ["),
            ],
        );
        let config = Config::load(&path).unwrap();
        assert_eq!(
            config.service.fresh_for_s, 300,
            "50-till comes after 10-fleet"
        );
        assert_eq!(config.service.breaker_failures, 5);
        assert_eq!(config.till.id, "till-0042");
        let names: Vec<_> = config.scanners.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["base", "front"]);
    }

    /// The merged tables go back through TOML text (not `Value::try_into`, for size): every
    /// kind of value must come out of that round trip as it went in.
    #[test]
    fn a_merge_reads_the_same_config_as_one_file() {
        let example = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/wxcardd.toml"
        ))
        .unwrap();
        // Uncommented examples of everything the example file leaves commented out, with
        // strings that need escaping, an inline table, arrays and a float.
        let extra = r#"
[[scanner]]
name = "front \"A\" 前台\\ é"
device = { kind = "serial", path = "/dev/wxcard/serial newland 0001", baud = 9600 }
duplicate_window_ms = 300
[scanner.frame]
terminators = ["cr", "lf"]
stx = false
prefix = "]Q"
suffix = "\t"

[[scanner]]
name = "wedge"
device = { kind = "evdev", path = "/dev/wxcard/kbd-honeywell-0002" }

[[classify.rules]]
kind = "wechat_member_code"
charset = "digits"
min_len = 12
max_len = 18
"#;
        let one_file = format!("{example}\n{extra}");
        let (dir, path) = setup(&one_file, &[]);
        let alone = Config::load(&path).unwrap();
        assert_eq!(alone.scanners.len(), 2);

        // The same text with an empty drop-in (the merge's path), and split in two files.
        std::fs::write(dir.path().join("conf.d/10-empty.toml"), "").unwrap();
        assert_eq!(Config::load(&path).unwrap(), alone);
        std::fs::write(&path, &example).unwrap();
        std::fs::write(dir.path().join("conf.d/10-empty.toml"), extra).unwrap();
        assert_eq!(Config::load(&path).unwrap(), alone);

        // A float (the display's dpi) and a drop-in overriding a table the main file set.
        std::fs::write(
            dir.path().join("conf.d/20-display.toml"),
            "[display]\ndpi = 96.5\n",
        )
        .unwrap();
        let merged = Config::load(&path).unwrap();
        assert_eq!(merged.display.dpi.map(|d| d.0), Some(96.5));
    }

    #[test]
    fn errors_name_the_drop_in_and_its_line() {
        let (dir, path) = setup("", &[("20-x.toml", "\n[service]\nbogus = 1\n")]);
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("20-x.toml") && err.contains("line 3"), "{err}");

        std::fs::write(
            dir.path().join("conf.d/20-x.toml"),
            "[store]\n\nmax_cards = 0\n",
        )
        .unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("20-x.toml line 3") && err.contains("store.max_cards"),
            "{err}"
        );

        // The second scanner of the merged list is the drop-in's first: same name twice.
        std::fs::write(&path, SCANNER.replace("NAME", "front")).unwrap();
        std::fs::write(
            dir.path().join("conf.d/20-x.toml"),
            format!("\n\n{}", SCANNER.replace("NAME", "front")),
        )
        .unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("20-x.toml line 4") && err.contains("scanner[1].name"),
            "{err}"
        );
    }
}

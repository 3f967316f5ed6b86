//! A small typed writer of Prometheus's text exposition format (version 0.0.4), the format
//! node_exporter's textfile collector reads and `promtool check metrics` checks.
//!
//! Why not the `prometheus-client` crate: it writes OpenMetrics text (`# EOF`, counters typed
//! without their `_total` suffix), which the textfile collector does not parse as written.
//! The format is small; this writer makes its rules types: every family is written once with
//! its HELP and TYPE before its samples, label values are escaped, counters end in `_total`.

use std::fmt::Write;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (restarts at 0 with the process); the name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in cumulative buckets, with `_bucket`, `_sum` and `_count`.
    Histogram,
}

/// The text being written.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

/// One family's samples, written through [`Exposition::family`].
pub struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Exposition::default()
    }

    /// Starts a family: its HELP and TYPE lines. Samples follow through the returned writer.
    pub fn family(&mut self, name: &'static str, kind: Kind, help: &str) -> Family<'_> {
        debug_assert!(
            kind != Kind::Counter || name.ends_with("_total"),
            "counter {name} must end in _total"
        );
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        Family {
            out: &mut self.text,
            name,
        }
    }

    /// The finished text.
    pub fn finish(self) -> String {
        self.text
    }
}

impl Family<'_> {
    /// One sample of the family itself.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.sample_named("", labels, value)
    }

    /// One sample whose name is the family's plus `suffix` (`_bucket`, `_sum`, `_count`).
    pub fn sample_named(&mut self, suffix: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(self.name);
        self.out.push_str(suffix);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        self.out.push(' ');
        self.out.push_str(&number(value));
        self.out.push('\n');
        self
    }
}

/// A sample value: integers without a fraction, `+Inf`/`-Inf`/`NaN` as Prometheus spells them.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// `le` label values: `+Inf` for the last bucket.
pub fn bound(value: f64) -> String {
    number(value)
}

fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn escape_help(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_families_with_escaped_labels() {
        let mut out = Exposition::new();
        out.family("x_total", Kind::Counter, "Things.\nMore.")
            .sample(&[("a", "q\"b\\c\nd")], 3.0)
            .sample(&[], 0.5);
        let text = out.finish();
        assert_eq!(
            text,
            "# HELP x_total Things.\\nMore.\n# TYPE x_total counter\n\
             x_total{a=\"q\\\"b\\\\c\\nd\"} 3\nx_total 0.5\n"
        );
        assert_eq!(bound(f64::INFINITY), "+Inf");
    }
}

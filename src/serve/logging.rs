//! The server's own log of what Rocket and hyper report: warnings and errors
//! as plain `serve: LEVEL: message` lines on stderr.
//!
//! Rocket's logger paints its lines and prints every unmatched request in
//! full, so a client choosing its URLs chooses what lands in the log. This
//! one is installed before Rocket starts (Rocket then leaves the `log`
//! facade to it): it drops the "No matching routes" and catcher lines (the
//! catch-all answers those with a 404 or 405, the access log has a line for
//! each, and `/metrics` counts them as route `unmatched`) and Rocket's launch
//! line (the server prints its own), strips terminal escape sequences, shows any other control
//! character escaped, and cuts a line at [`MAX_LINE`] characters. No logging
//! crate offers that filtering, and the `log` facade makes it a few lines.
use log::{Level, LevelFilter, Log, Metadata, Record};

/// The longest message printed, in characters.
pub const MAX_LINE: usize = 300;

struct PlainLogger;

impl Log for PlainLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= Level::Warn
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = record.args().to_string();
        if is_noise(&text) {
            return;
        }
        let level = match record.level() {
            Level::Error => "error",
            _ => "warning",
        };
        eprintln!("serve: {level}: {}", plain(&text, MAX_LINE));
    }

    fn flush(&self) {}
}

/// Rocket's lines that say nothing the access log and `/metrics` do not:
/// unmatched requests, the catcher that answered them, and its launch (the
/// server prints its own address line).
fn is_noise(text: &str) -> bool {
    let t = text.trim_start();
    [
        "No matching routes",
        "Responding with registered",
        "Rocket has launched",
    ]
    .iter()
    .any(|p| t.starts_with(p))
}

/// `text` without terminal escape sequences, other control characters
/// escaped, cut to `max` characters.
pub fn plain(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max + 16));
    let mut shown = 0usize;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters... final byte in @..~; else ESC + one.
            if chars.peek() == Some(&'[') {
                chars.next();
                for n in chars.by_ref() {
                    if ('@'..='~').contains(&n) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
            continue;
        }
        if shown == max {
            let rest = chars.count() + 1;
            out.push_str(&format!("... ({rest} more characters)"));
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        shown += 1;
    }
    out.trim().to_string()
}

/// Install the logger (once per process; later calls do nothing).
pub fn init() {
    if log::set_boxed_logger(Box::new(PlainLogger)).is_ok() {
        log::set_max_level(LevelFilter::Warn);
    }
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn escapes_are_stripped_control_characters_shown_and_long_lines_cut() {
        assert_eq!(plain("\u{1b}[1;31mred\u{1b}[0m text", 100), "red text");
        assert_eq!(plain("a\u{7}b\tc", 100), "a\\u{7}b\\tc");
        let cut = plain(&"x".repeat(1000), 10);
        assert_eq!(cut, format!("{}... (990 more characters)", "x".repeat(10)));
    }
}

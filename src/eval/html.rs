//! The pieces the HTML reports (`report`, `eda`) share: one style sheet,
//! escaping, file-safe names and figures inlined as PNG data, so a report is
//! a single file with no scripts, links or URLs.
use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;

use crate::error::{Error, Result};

/// The opening of a report page, up to and including `<body>`.
pub fn head(title: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{}</title>
<style>
body {{ font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 2rem auto; max-width: 1040px; color: #222; line-height: 1.45; padding: 0 1rem; }}
h1 {{ font-size: 1.6rem; margin-bottom: .2rem; }} h2 {{ font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }}
h3 {{ font-size: 1.05rem; margin-bottom: .2rem; }}
.meta {{ color: #555; }}
table {{ border-collapse: collapse; margin: .8rem 0; font-size: .92rem; }}
th, td {{ border: 1px solid #d4d4d4; padding: .3rem .6rem; text-align: right; }}
th {{ background: #f3f3f3; white-space: nowrap; }} td:first-child, th:first-child, td:nth-child(2), th:nth-child(2) {{ text-align: left; }}
tr.best td {{ font-weight: bold; }} tr.warn td {{ background: #fff4e0; }}
figure {{ margin: 1.2rem 0; }} img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ color: #555; font-size: .9rem; }}
.cm td {{ min-width: 4.5rem; }} caption {{ text-align: left; font-weight: bold; padding-bottom: .3rem; }} .cm td:nth-child(2) {{ text-align: right; }}
.pair {{ display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }}
</style></head><body>
"#,
        escape(title)
    )
}

/// Text made safe inside HTML elements and attribute values.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A name made safe as part of a file name.
pub fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A `<figure>` with the PNG `dir/file` inlined, its title and caption.
pub fn figure(dir: &Path, file: &str, title: &str, caption: &str) -> Result<String> {
    let path = dir.join(file);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let mut h = String::new();
    let _ = writeln!(
        h,
        "<figure><img alt=\"{}\" src=\"data:image/png;base64,{}\"><figcaption><b>{}</b>. {} (<code>{}</code>)</figcaption></figure>",
        escape(title),
        base64::engine::general_purpose::STANDARD.encode(bytes),
        escape(title),
        escape(caption),
        file
    );
    Ok(h)
}

//! Evaluation: metrics of predicted click probabilities.
pub mod calibrate;
pub mod compare;
pub mod eda;
pub mod fields;
pub mod html;
pub mod plots;
pub mod report;
pub mod runs;

/// Items joined with commas for a summary line, or "none".
pub fn list_or_none<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items
            .iter()
            .map(|s| s.as_ref())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

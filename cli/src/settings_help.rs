//! The settings' list in `gavel serve --help` (and demo's and bench's), made from the defaults
//! file compiled into the server, so that it names every setting and its default as they are.

/// One setting of `config/default.toml`: its name, its default as written there, and the
/// first sentence of the comment above it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub name: String,
    pub default: String,
    pub summary: String,
}

impl Setting {
    /// The environment variable that sets it.
    pub fn variable(&self) -> String {
        format!("GAVEL_{}", self.name.to_uppercase())
    }
}

/// Every setting of the defaults file, in its order.
pub fn settings() -> Vec<Setting> {
    let mut settings = Vec::new();
    let mut comment: Vec<&str> = Vec::new();
    for line in gavel::config::DEFAULTS.lines().map(str::trim) {
        if let Some(text) = line.strip_prefix('#') {
            comment.push(text.trim());
        } else if let Some((name, value)) = line.split_once('=') {
            settings.push(Setting {
                name: name.trim().to_owned(),
                default: value.trim().trim_matches('"').to_owned(),
                summary: first_sentence(&comment.join(" ")),
            });
            comment.clear();
        } else {
            // A blank line ends a comment that belongs to no setting (the file's header).
            comment.clear();
        }
    }
    settings
}

/// Up to the first full stop that ends a sentence (not the one of "e.g.").
fn first_sentence(text: &str) -> String {
    let end = text.match_indices(". ").map(|(at, _)| at).find(|&at| {
        let before = &text[..at];
        !(before.ends_with("e.g") || before.ends_with("i.e"))
    });
    match end {
        Some(end) => text[..=end].to_owned(),
        None => text.to_owned(),
    }
}

/// The text shown after the options: every setting as its `GAVEL_*` variable, its default and
/// what it is.
pub fn help() -> String {
    let mut text = String::from(
        "Settings, each an environment variable: it wins over the file given with --config, \
         which wins over the default. A list is comma-separated in the environment. Each \
         setting in full: config/default.toml and the README.\n",
    );
    for setting in settings() {
        let default = match setting.default.as_str() {
            "" | "[]" => "(empty)",
            default => default,
        };
        text.push_str(&format!(
            "\n  {:<32} default {default}\n      {}\n",
            setting.variable(),
            setting.summary
        ));
    }
    text
}

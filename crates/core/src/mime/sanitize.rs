//! File names made safe to write to disk: the last path component only,
//! no control, reserved or invisible characters, no Windows device names,
//! a bounded length.

/// The longest sanitised name, in bytes; below the 255 of common file
/// systems, with room for a prefix or a counter the caller may add.
const MAX_SAFE_LEN: usize = 200;

/// See [`crate::Attachment::safe_filename`].
pub(crate) fn sanitize(name: &str, fallback: &str) -> String {
    // The last path component, for both separators.
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let mut out: String = base
        .chars()
        .filter(|&c| !crate::invisible::is_invisible(c))
        .map(|c| match c {
            c if c.is_control() => '_', // C0, DEL and C1
            '<' | '>' | ':' | '"' | '|' | '?' | '*' => '_',
            c => c,
        })
        .collect();
    let trimmed = out
        .trim_start_matches(['.', ' '])
        .trim_end_matches(['.', ' '])
        .to_owned();
    out = trimmed;
    if out.is_empty() {
        out = sanitize_fallback(fallback);
    }
    let stem = out.split('.').next().unwrap_or("");
    const DEVICES: [&str; 22] = [
        "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
        "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
    ];
    if DEVICES
        .iter()
        .any(|d| d.eq_ignore_ascii_case(stem.trim_end()))
    {
        out.insert(0, '_');
    }
    truncate_keeping_extension(out, MAX_SAFE_LEN)
}

fn sanitize_fallback(fallback: &str) -> String {
    let clean: String = fallback
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    if clean.is_empty() {
        "attachment".to_owned()
    } else {
        clean
    }
}

fn truncate_keeping_extension(name: String, max: usize) -> String {
    if name.len() <= max {
        return name;
    }
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if name.len() - dot <= 16 && dot > 0 => name.split_at(dot),
        _ => (name.as_str(), ""),
    };
    let mut cut = max - ext.len();
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{}", &stem[..cut], ext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_strips_directories_and_dangerous_characters() {
        assert_eq!(sanitize("../../etc/passwd", "attachment1"), "passwd");
        assert_eq!(sanitize("..\\..\\boot.ini", "attachment1"), "boot.ini");
        assert_eq!(sanitize("a\0b\r\nc.txt", "attachment1"), "a_b__c.txt");
        assert_eq!(sanitize("what?<>.txt", "attachment1"), "what___.txt");
        assert_eq!(sanitize("..", "attachment1"), "attachment1");
        assert_eq!(sanitize("", "attachment2"), "attachment2");
        assert_eq!(sanitize(".hidden", "attachment1"), "hidden");
        assert_eq!(sanitize("trailing. ", "attachment1"), "trailing");
        assert_eq!(sanitize("CON.txt", "attachment1"), "_CON.txt");
        assert_eq!(sanitize("画像1.png", "attachment1"), "画像1.png");
        assert_eq!(sanitize("x/", "../evil"), "evil");
        assert_eq!(sanitize("invoice\u{202E}fdp.exe", "a"), "invoicefdp.exe");
        assert_eq!(sanitize("a\u{200B}b\u{2066}c\u{85}d", "a"), "abc_d");
        assert_eq!(
            sanitize("a\u{2028}b\u{E0041}c\u{3164}d.txt", "a"),
            "abcd.txt"
        );
    }

    #[test]
    fn sanitize_drops_every_invisible_character() {
        assert_eq!(
            sanitize(
                "a\u{FE0F}b\u{180B}c\u{17B4}d\u{1BCA1}e\u{1D175}f\u{2065}g\u{FFF3}h.txt",
                "x"
            ),
            "abcdefgh.txt"
        );
        assert_eq!(crate::text::printable("a\u{E0100}b", 10), "a\\u{e0100}b");
    }

    #[test]
    fn sanitize_truncates_long_names_keeping_the_extension() {
        let long = format!("{}.pdf", "あ".repeat(100));
        let safe = sanitize(&long, "attachment1");
        assert!(safe.len() <= MAX_SAFE_LEN, "{}", safe.len());
        assert!(safe.ends_with(".pdf"));
        assert!(safe.starts_with("あああ"));
    }
}

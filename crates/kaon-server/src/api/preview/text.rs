//! Text cut to a size without cutting a character.

/// `bytes` less a UTF-8 sequence cut short at its end (a part of a file
/// read up to a size may end inside a character).
pub(crate) fn complete_utf8(bytes: &[u8]) -> &[u8] {
    let n = bytes.len();
    for back in 1..=n.min(4) {
        let b = bytes[n - back];
        if b & 0xc0 == 0x80 {
            continue; // a continuation byte: look further back
        }
        let needs = match b {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            _ => 4,
        };
        return if needs > back {
            &bytes[..n - back]
        } else {
            bytes
        };
    }
    bytes
}

/// At most `max` bytes of `bytes` as text, ending on a whole character;
/// bytes that are not UTF-8 show as U+FFFD. True when something was left
/// out (`whole` says whether `bytes` is all of the content).
pub(crate) fn prefix(bytes: &[u8], max: usize, whole: bool) -> (String, bool) {
    let cut = &bytes[..bytes.len().min(max)];
    let cut = if whole && cut.len() == bytes.len() {
        cut
    } else {
        complete_utf8(cut)
    };
    let left_out = !whole || cut.len() < bytes.len();
    (String::from_utf8_lossy(cut).into_owned(), left_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_cuts_inside_a_character() {
        let s = "aé€😀".as_bytes(); // 1 + 2 + 3 + 4 bytes
        assert_eq!(complete_utf8(&s[..2]), b"a");
        assert_eq!(complete_utf8(&s[..3]), "aé".as_bytes());
        assert_eq!(complete_utf8(&s[..5]), "aé".as_bytes());
        assert_eq!(complete_utf8(&s[..6]), "aé€".as_bytes());
        assert_eq!(complete_utf8(&s[..9]), "aé€".as_bytes());
        assert_eq!(complete_utf8(s), s);
        assert_eq!(prefix(s, 8, true), ("aé€".to_string(), true));
        assert_eq!(prefix(s, 100, true), ("aé€😀".to_string(), false));
        assert_eq!(prefix(s, 100, false), ("aé€😀".to_string(), true));
        // Not UTF-8: shown, not refused.
        assert_eq!(
            prefix(b"caf\xe9 au lait", 100, true).0,
            "caf\u{fffd} au lait"
        );
    }
}

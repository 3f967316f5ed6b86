//! Linux key codes to characters, by a fixed US keyboard table with Shift and CapsLock
//! tracked.
//!
//! A keyboard-wedge scanner types its code as key presses. Reading them through X11/xkb would
//! tie the daemon to a desktop and to whatever layout the till's keyboard has (the classic
//! cause of garbled scans); most scanners ship set to the US layout, so a fixed table for it is
//! both simpler and right. Enter (and keypad Enter) becomes CR and Tab becomes TAB, so the
//! shared frame parser ends frames on them as it does for serial scanners.

/// Key codes from `linux/input-event-codes.h` this table gives meaning to.
mod code {
    pub const TAB: u16 = 15;
    pub const ENTER: u16 = 28;
    pub const LEFTSHIFT: u16 = 42;
    pub const RIGHTSHIFT: u16 = 54;
    pub const SPACE: u16 = 57;
    pub const CAPSLOCK: u16 = 58;
    pub const KPENTER: u16 = 96;
    /// Ctrl, Alt, Meta, NumLock, ScrollLock: held or toggled, never typed.
    pub const IGNORED: [u16; 9] = [29, 56, 69, 70, 97, 100, 125, 126, 127];
}

/// What one key event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Typed {
    /// A character (ASCII; CR for Enter, TAB for Tab).
    Byte(u8),
    /// Nothing: a release, a modifier, an autorepeat.
    Nothing,
    /// A key press with no character in the table.
    Unmapped(u16),
}

/// Modifier state of one keyboard device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Keyboard {
    left_shift: bool,
    right_shift: bool,
    caps_lock: bool,
}

impl Keyboard {
    /// A keyboard with no modifier held and CapsLock off.
    pub fn new() -> Self {
        Keyboard::default()
    }

    /// Whether CapsLock is on.
    pub fn caps_lock(&self) -> bool {
        self.caps_lock
    }

    /// Applies one `EV_KEY` event: `value` 1 press, 0 release, 2 autorepeat.
    pub fn key(&mut self, key: u16, value: i32) -> Typed {
        let pressed = match value {
            1 => true,
            0 => false,
            // Autorepeat: a scanner never holds a key; a repeat would duplicate a character.
            _ => return Typed::Nothing,
        };
        match key {
            code::LEFTSHIFT => self.left_shift = pressed,
            code::RIGHTSHIFT => self.right_shift = pressed,
            code::CAPSLOCK if pressed => self.caps_lock = !self.caps_lock,
            _ if !pressed || code::IGNORED.contains(&key) || key == code::CAPSLOCK => {}
            code::ENTER | code::KPENTER => return Typed::Byte(b'\r'),
            code::TAB => return Typed::Byte(b'\t'),
            code::SPACE => return Typed::Byte(b' '),
            _ => {
                return match us_char(key, self.left_shift || self.right_shift, self.caps_lock) {
                    Some(b) => Typed::Byte(b),
                    None => Typed::Unmapped(key),
                };
            }
        }
        Typed::Nothing
    }
}

/// The US layout: (first key code, unshifted row, shifted row).
const ROWS: [(u16, &[u8], &[u8]); 8] = [
    (2, b"1234567890-=", b"!@#$%^&*()_+"),
    (16, b"qwertyuiop[]", b"QWERTYUIOP{}"),
    (30, b"asdfghjkl;'`", b"ASDFGHJKL:\"~"),
    (43, b"\\zxcvbnm,./", b"|ZXCVBNM<>?"),
    (55, b"*", b"*"),
    // Keypad, read with NumLock on as scanners in "keypad emulation" send it.
    (71, b"789-456+1230.", b"789-456+1230."),
    (98, b"/", b"/"),
    (117, b"=", b"="),
];

fn us_char(key: u16, shift: bool, caps: bool) -> Option<u8> {
    ROWS.iter().find_map(|&(first, plain, shifted)| {
        let i = usize::from(key.checked_sub(first)?);
        let b = *plain.get(i)?;
        Some(if b.is_ascii_lowercase() {
            // CapsLock inverts Shift for letters only.
            if shift != caps {
                b.to_ascii_uppercase()
            } else {
                b
            }
        } else if shift {
            shifted[i]
        } else {
            b
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(kb: &mut Keyboard, keys: &[(u16, i32)]) -> String {
        keys.iter()
            .filter_map(|&(k, v)| match kb.key(k, v) {
                Typed::Byte(b) => Some(char::from(b)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn shift_and_capslock() {
        let mut kb = Keyboard::new();
        // a, Shift+a, CapsLock, a, Shift+a, Shift+1, CapsLock, 1, Enter
        let keys = [
            (30, 1),
            (30, 0),
            (42, 1),
            (30, 1),
            (30, 0),
            (42, 0),
            (58, 1),
            (58, 0),
            (30, 1),
            (30, 0),
            (54, 1),
            (30, 1),
            (30, 0),
            (2, 1),
            (2, 0),
            (54, 0),
            (58, 1),
            (58, 0),
            (2, 1),
            (2, 2),
            (2, 0),
            (28, 1),
        ];
        assert_eq!(typed(&mut kb, &keys), "aAAa!1\r");
        assert!(!kb.caps_lock());
    }

    #[test]
    fn every_row_and_unmapped_keys() {
        let mut kb = Keyboard::new();
        let all: Vec<(u16, i32)> = (2..=13)
            .chain(16..=27)
            .chain(30..=41)
            .chain(43..=53)
            .map(|k| (k, 1))
            .collect();
        assert_eq!(
            typed(&mut kb, &all),
            "1234567890-=qwertyuiop[]asdfghjkl;'`\\zxcvbnm,./"
        );
        kb.key(42, 1);
        assert_eq!(
            typed(&mut kb, &all),
            "!@#$%^&*()_+QWERTYUIOP{}ASDFGHJKL:\"~|ZXCVBNM<>?"
        );
        assert_eq!(kb.key(59, 1), Typed::Unmapped(59)); // F1
        assert_eq!(kb.key(29, 1), Typed::Nothing); // Ctrl
        assert_eq!(
            typed(&mut kb, &[(79, 1), (82, 1), (83, 1), (96, 1), (15, 1)]),
            "10.\r\t"
        );
    }
}

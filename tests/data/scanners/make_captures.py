#!/usr/bin/env python3
"""Writes the scanner captures in this directory (*.cap) and their expected scans
(*.expected).

No scanner hardware was attached when these were made: each capture is the byte stream the
named model family sends with the stated settings, built from its programming manual's frame
layout (see /work/shared/docs/scanners.md). The evdev stream follows what the Linux HID
keyboard driver emits for a wedge scanner: MSC_SCAN with the HID usage, the EV_KEY press,
SYN_REPORT, then the same for the release.

Format of a .cap file:
  lines starting with '# ' describe the device (model family, interface, settings);
  lines starting with '#: ' are TOML read by the tests (interface, [frame] settings);
  a line '#--' ends the header; every byte after its newline is the payload, as read from
  the device (serial bytes, or 24-byte struct input_event records).
The .expected file has one line per event: 'scan <AIM id or -> <code>' or
'rejected <reason>'.

Run from this directory: python3 make_captures.py
"""
import struct

def write(name, header, settings, payload, expected):
    head = "".join(f"# {line}\n" for line in header)
    head += "".join(f"#: {line}\n" for line in settings)
    head += "#--\n"
    with open(f"{name}.cap", "wb") as f:
        f.write(head.encode() + payload)
    with open(f"{name}.expected", "w") as f:
        f.write("".join(line + "\n" for line in expected))

write(
    "honeywell-voyager-cdc-cr",
    ["model family: Honeywell Voyager 1450g / 1470g (USB CDC-ACM, vendor 0c2e)",
     "interface: USB serial emulation (/dev/ttyACM0), 9600 8N1, no flow control",
     "settings: factory default suffix CR, AIM ids off, no prefix",
     "content: WeChat card codes off a phone, a printed merchant card, a double read"],
    ['interface = "serial"', "[frame]", 'terminators = ["cr"]', "aim = false"],
    b"123456789012\r" b"VIP0042\r" b"881234567890123456\r" b"881234567890123456\r" b"M-2024-0001\r",
    ["scan - 123456789012", "scan - VIP0042", "scan - 881234567890123456", "scan - M-2024-0001"],
)

write(
    "newland-fr40-crlf-aim",
    ["model family: Newland NLS-FR40 / FR80 presentation scanners (CDC mode, vendor 1eab)",
     "interface: USB CDC-ACM, 115200 8N1",
     "settings: suffix CRLF, AIM ID prefix on (Code ID: AIM)",
     "content: a WeChat QR code, an EAN-13 product code, a Code 128 card, a GS1 QR"],
    ['interface = "serial"', "[frame]", 'terminators = ["crlf"]'],
    b"]Q1123456789012\r\n" b"]E06901234567892\r\n" b"]C0VIP0042\r\n" + "]Q3会员123\r\n".encode(),
    ["scan ]Q1 123456789012", "scan ]E0 6901234567892", "scan ]C0 VIP0042", "scan ]Q3 会员123"],
)

write(
    "zebra-ds2208-stx-etx-aim",
    ["model family: Zebra DS2208 / DS4308 (RS-232 cable, vendor 05e0 when on USB)",
     "interface: RS-232 through a USB-serial adapter, 9600 8N1",
     "settings: prefix STX (0x02), suffix ETX (0x03), transmit AIM code ID on",
     "content: line noise before the first STX, two QR codes, a Code 128 code"],
    ['interface = "serial"', "[frame]", 'terminators = ["etx"]', "stx = true"],
    b"\xff\x00\x02]Q1123456789012\x03" b"\x02]Q1987654321098\x03" b"\x02]C1ABC123\x03",
    ["rejected frame of 2 bytes cut short before its terminator",
     "scan ]Q1 123456789012", "scan ]Q1 987654321098", "scan ]C1 ABC123"],
)

write(
    "datalogic-quickscan-prefix-suffix",
    ["model family: Datalogic QuickScan QD2430 (RS-232 / USB-COM, vendor 05f9)",
     "interface: USB-COM, 9600 8N1",
     "settings: global prefix 'DL:', global suffix '#', terminator CR LF, AIM ids on",
     "content: prefixed and suffixed codes, one without the configured prefix"],
    ['interface = "serial"', "[frame]", 'terminators = ["cr", "lf"]', 'prefix = "DL:"', 'suffix = "#"'],
    b"DL:]Q1123456789012#\r\n" b"DL:]C0VIP0042#\r\n" b"]C0NOPREFIX#\r\n",
    ["scan ]Q1 123456789012", "scan ]C0 VIP0042", "scan ]C0 NOPREFIX"],
)

write(
    "netum-ch34x-noise",
    ["model family: Netum NT-1228BL class scanner on a WCH CH340 bridge (vendor 1a86)",
     "interface: USB-serial bridge, 9600 8N1",
     "settings: suffix CR, AIM ids off",
     "content: what a flaky cable and a mis-set scanner produce: an over-long frame,",
     "control and non-UTF-8 bytes inside codes, empty frames; good codes around them"],
    ['interface = "serial"', "[frame]", 'terminators = ["cr"]', "aim = false"],
    b"111111111111\r" + b"9" * 300 + b"\r" + b"12\x1b345\r" b"ab\xffcd\r" b"\r\r" b"222222222222\r",
    ["scan - 111111111111",
     "rejected frame of 300 bytes is longer than the 256-byte capacity",
     "rejected control character 0x1b at byte 2 of the code",
     "rejected invalid UTF-8 at byte 2 of the code",
     "scan - 222222222222"],
)

# --- evdev keyboard-wedge -------------------------------------------------------------------
EV_SYN, EV_KEY, EV_MSC, MSC_SCAN = 0, 1, 4, 4
KEYS = {}  # char -> (key code, HID usage, shift)
for i, c in enumerate("1234567890"):
    KEYS[c] = (2 + i, 0x7001E + i, False)
for i, c in enumerate("!@#$%^&*()"):
    KEYS[c] = (2 + i, 0x7001E + i, True)
for row, first in (("qwertyuiop", 16), ("asdfghjkl", 30), ("zxcvbnm", 44)):
    for i, c in enumerate(row):
        usage = 0x70004 + ord(c) - ord("a")
        KEYS[c] = (first + i, usage, False)
        KEYS[c.upper()] = (first + i, usage, True)
KEYS["-"] = (12, 0x7002D, False)
KEYS["_"] = (12, 0x7002D, True)
KEYS["\r"] = (28, 0x70028, False)
KEYS["\t"] = (15, 0x7002B, False)
LSHIFT, CAPSLOCK, F1 = (42, 0x700E1), (58, 0x70039), (59, 0x7003A)

clock = [1_764_300_000, 0]

def ev(kind, code, value):
    clock[1] += 1000  # 1 ms between events: a 1 kHz full-speed HID scanner
    if clock[1] >= 1_000_000:
        clock[0] += 1
        clock[1] -= 1_000_000
    return struct.pack("<qqHHi", clock[0], clock[1], kind, code, value)

def key(code, usage, value):
    return ev(EV_MSC, MSC_SCAN, usage) + ev(EV_KEY, code, value) + ev(EV_SYN, 0, 0)

def tap(code, usage):
    return key(code, usage, 1) + key(code, usage, 0)

def typed(text, caps=False):
    """Types text as a scanner does: Shift held around shifted characters; with caps=True
    the scanner toggles CapsLock around the code instead and sends letters unshifted."""
    out = tap(*CAPSLOCK) if caps else b""
    for c in text:
        code, usage, shift = KEYS[c]
        if caps and c.isalpha():
            shift = False
        if shift:
            out += key(*LSHIFT, 1)
        out += tap(code, usage)
        if shift:
            out += key(*LSHIFT, 0)
    return out + (tap(*CAPSLOCK) if caps else b"")

wedge = (typed("123456789012\r") + typed("VIP0042\r") + typed("Ab_Cd-9!\t")
         + typed("MEMBER77", caps=True) + typed("\r")
         + typed("12") + tap(*F1) + typed("34\r")
         + typed("881234567890123456\r"))
write(
    "honeywell-hid-wedge",
    ["model family: Honeywell Voyager 1250g in USB HID keyboard mode (vendor 0c2e)",
     "interface: evdev /dev/input/by-id/usb-Honeywell_...-event-kbd, 64-bit little-endian",
     "settings: US keyboard, suffix Enter (one code Tab), 1 ms polling, AIM ids off",
     "content: digits, shifted letters and symbols, a code typed under CapsLock,",
     "a stray F1 key inside a code"],
    ['interface = "evdev"', "[frame]", 'terminators = ["cr", "tab"]', "aim = false"],
    wedge,
    ["scan - 123456789012", "scan - VIP0042", "scan - Ab_Cd-9!", "scan - MEMBER77",
     "rejected key code 59 has no character in the US keymap", "scan - 881234567890123456"],
)

//! The HID report descriptor of a scanner in USB HID POS mode, and the reports it describes.
//!
//! Scanners switched to HID POS (the HID Point of Sale Usage Tables 1.02, Bar Code Scanner page
//! 0x8C) do not agree on one report layout: Honeywell sends a byte count, three symbology bytes,
//! 56 data bytes, two vendor bytes and a byte of "continued" bits; other makers move, drop or
//! resize these fields, or add none of the optional ones. What they share is the descriptor
//! that says where each field is. So [`ReportLayout::parse`] walks the descriptor (HID 1.11,
//! section 6.2.2: short items, global state with push/pop, local usages) and records where the
//! usages below sit in the input report that carries the decoded data; [`ReportLayout::decode`]
//! then picks one report apart by those offsets. No IO, no allocation, and every count and
//! offset from the device is checked: a descriptor or report that does not add up is an error
//! with a reason, never a panic.
//!
//! Usages used (Bar Code Scanner page 0x8C unless noted; checked against the HID Usage Tables):
//! - 0x8C:0xFE Decoded Data (DV): the code's bytes, 8-bit fields;
//! - 0x8C:0xFB, 0xFC, 0xFD Symbology Identifier 1, 2, 3 (DV): the AIM symbology identifier
//!   (`]`, letter, modifier), or zero when the scanner sends none;
//! - 0x8C:0xFF Decode Data Continued (DF): set when the next report continues this code;
//! - 0x01:0x3B Byte Count (Generic Desktop, DV): how many bytes of Decoded Data are valid.
//!   Without it the data ends at the first NUL (the padding of a fixed-size report).

use std::fmt;

/// Usage page of the Bar Code Scanner usages.
pub const PAGE_BAR_CODE_SCANNER: u16 = 0x8C;
/// 0x8C:0x02 Bar Code Scanner, the application collection.
pub const USAGE_BAR_CODE_SCANNER: u32 = usage(PAGE_BAR_CODE_SCANNER, 0x02);
/// 0x8C:0x12 Scanned Data Report, the logical collection of a scan.
pub const USAGE_SCANNED_DATA_REPORT: u32 = usage(PAGE_BAR_CODE_SCANNER, 0x12);
/// 0x8C:0xFB Symbology Identifier 1.
pub const USAGE_SYMBOLOGY_ID_1: u32 = usage(PAGE_BAR_CODE_SCANNER, 0xFB);
/// 0x8C:0xFC Symbology Identifier 2.
pub const USAGE_SYMBOLOGY_ID_2: u32 = usage(PAGE_BAR_CODE_SCANNER, 0xFC);
/// 0x8C:0xFD Symbology Identifier 3.
pub const USAGE_SYMBOLOGY_ID_3: u32 = usage(PAGE_BAR_CODE_SCANNER, 0xFD);
/// 0x8C:0xFE Decoded Data.
pub const USAGE_DECODED_DATA: u32 = usage(PAGE_BAR_CODE_SCANNER, 0xFE);
/// 0x8C:0xFF Decode Data Continued.
pub const USAGE_DECODE_DATA_CONTINUED: u32 = usage(PAGE_BAR_CODE_SCANNER, 0xFF);
/// 0x01:0x3B Byte Count (Generic Desktop page).
pub const USAGE_BYTE_COUNT: u32 = usage(0x01, 0x3B);

/// Largest report descriptor the kernel hands out (`HID_MAX_DESCRIPTOR_SIZE`).
pub const MAX_DESCRIPTOR: usize = 4096;
/// Largest input report body accepted, in bytes (a high-speed interrupt packet).
pub const MAX_REPORT: usize = 1024;
/// Push/pop depth of the global state kept while parsing.
const STACK_DEPTH: usize = 8;
/// Usages one main item may list before the rest repeat the last one.
const LOCAL_USAGES: usize = 64;

/// A 32-bit extended usage: page in the high half, id in the low half.
pub const fn usage(page: u16, id: u16) -> u32 {
    ((page as u32) << 16) | id as u32
}

/// Why a report descriptor cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DescriptorError {
    /// Longer than [`MAX_DESCRIPTOR`].
    #[error("report descriptor of {0} bytes is longer than {MAX_DESCRIPTOR}")]
    TooLong(usize),
    /// An item runs past the end of the descriptor.
    #[error("report descriptor item at byte {0} is cut short")]
    Truncated(usize),
    /// Push nested deeper than the parser keeps, or a pop without a push.
    #[error("report descriptor push/pop at byte {0} is unbalanced or nested too deep")]
    Stack(usize),
    /// An input report longer than [`MAX_REPORT`] bytes.
    #[error("input report {id} is longer than {MAX_REPORT} bytes")]
    ReportTooLong {
        /// Its report ID (0: none).
        id: u8,
    },
    /// No input field with the Decoded Data usage (0x8C:0xFE): not a HID POS scanner, or one
    /// still in keyboard mode.
    #[error(
        "no Decoded Data usage (Bar Code Scanner page 0x8C) in the report descriptor: \
         is the scanner in USB HID POS mode?"
    )]
    NoDecodedData,
    /// Decoded Data fields that are not whole bytes on a byte boundary.
    #[error("the Decoded Data field is not whole bytes on a byte boundary")]
    Unaligned,
}

/// Why one input report was thrown away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportFault {
    /// A read of zero bytes' report (a report ID alone, or nothing).
    #[error("empty report")]
    Empty,
    /// A report ID the descriptor does not declare for input.
    #[error("report ID {id} is not an input report of the descriptor")]
    UnknownId {
        /// The first byte of the report.
        id: u8,
    },
    /// Shorter than the fields the descriptor places in it.
    #[error("report of {len} bytes is shorter than the {want} its descriptor gives")]
    Short {
        /// Bytes received, report ID excluded.
        len: usize,
        /// Bytes the fields need.
        want: usize,
    },
    /// A byte count larger than the data field.
    #[error("byte count {count} is larger than the {capacity}-byte data field")]
    ByteCount {
        /// The Byte Count field.
        count: u32,
        /// The Decoded Data field's size.
        capacity: usize,
    },
}

/// A field in a report body: bit offset and size in bits (at most 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitField {
    /// Offset from the start of the report body (after any report ID byte), in bits.
    pub offset: u32,
    /// Size in bits, 1 to 32.
    pub size: u8,
}

impl BitField {
    fn end(self) -> u32 {
        self.offset + u32::from(self.size)
    }

    /// The field's value (HID fields are little-endian, least significant bit first).
    fn read(self, body: &[u8]) -> Option<u32> {
        let mut value = 0u32;
        for bit in 0..u32::from(self.size) {
            let at = self.offset.checked_add(bit)?;
            let byte = *body.get(usize::try_from(at / 8).ok()?)?;
            if byte >> (at % 8) & 1 == 1 {
                value |= 1 << bit;
            }
        }
        Some(value)
    }
}

/// Where the scan fields sit in a scanner's input report. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportLayout {
    /// Whether every report starts with a report ID byte (the descriptor declares IDs).
    numbered: bool,
    /// The ID of the report carrying Decoded Data (0 when unnumbered).
    id: u8,
    /// Input report IDs the descriptor declares, one bit each.
    input_ids: [u8; 32],
    /// Decoded Data: byte offset and length in the body.
    data_start: usize,
    data_len: usize,
    byte_count: Option<BitField>,
    symbology: [Option<BitField>; 3],
    continued: Option<BitField>,
    /// Bytes of body the fields above need.
    min_len: usize,
}

/// One report of a scan, picked apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece<'a> {
    /// The valid Decoded Data bytes.
    pub data: &'a [u8],
    /// Symbology Identifier 1 to 3 (0 where the report has no such field).
    pub symbology: [u8; 3],
    /// Decode Data Continued: the next report continues this code.
    pub continued: bool,
}

/// What a report turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// Part or all of a scan.
    Scan(Piece<'a>),
    /// Another input report the descriptor declares (trigger, status): nothing to do.
    Other,
}

/// One run of input fields with the same usage, as the walk over the descriptor reports them.
#[derive(Debug, Clone, Copy)]
struct Run {
    id: u8,
    usage: u32,
    offset: u32,
    size: u32,
    count: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct Globals {
    page: u16,
    size: u32,
    count: u32,
    id: u8,
}

/// Walks the descriptor's main Input items, calling `field` with each run of data fields that
/// share a usage; returns the input bit length of every report ID and whether IDs are used.
fn walk(
    descriptor: &[u8],
    mut field: impl FnMut(Run),
) -> Result<([u32; 256], bool), DescriptorError> {
    if descriptor.len() > MAX_DESCRIPTOR {
        return Err(DescriptorError::TooLong(descriptor.len()));
    }
    let mut bits = [0u32; 256];
    let mut numbered = false;
    let mut globals = Globals::default();
    let mut stack: heapless::Vec<Globals, STACK_DEPTH> = heapless::Vec::new();
    let mut usages: heapless::Vec<u32, LOCAL_USAGES> = heapless::Vec::new();
    let (mut usage_min, mut usage_max): (Option<u32>, Option<u32>) = (None, None);
    let mut at = 0usize;
    while at < descriptor.len() {
        let prefix = descriptor[at];
        if prefix == 0xFE {
            // Long item: data size, tag, data. None are defined; skip it.
            let size = *descriptor
                .get(at + 1)
                .ok_or(DescriptorError::Truncated(at))?;
            at += 3 + usize::from(size);
            if at > descriptor.len() {
                return Err(DescriptorError::Truncated(at));
            }
            continue;
        }
        let len = [0, 1, 2, 4][usize::from(prefix & 3)];
        let data = descriptor
            .get(at + 1..at + 1 + len)
            .ok_or(DescriptorError::Truncated(at))?;
        let mut raw = [0u8; 4];
        raw[..len].copy_from_slice(data);
        let value = u32::from_le_bytes(raw);
        let item_at = at;
        at += 1 + len;
        let local_usage = |value: u32, page: u16| {
            if len == 4 {
                value
            } else {
                usage(page, value as u16)
            }
        };
        match (prefix >> 2) & 3 {
            // Main items.
            0 => {
                if prefix >> 4 == 0x8 {
                    let id = globals.id;
                    let total = u64::from(globals.size) * u64::from(globals.count);
                    let offset = bits[usize::from(id)];
                    let end = u64::from(offset) + total;
                    if end > (MAX_REPORT as u64) * 8 {
                        return Err(DescriptorError::ReportTooLong { id });
                    }
                    // `end` fits: it is at most MAX_REPORT * 8.
                    bits[usize::from(id)] = end as u32;
                    let constant = value & 1 == 1;
                    let variable = value & 2 == 2;
                    if !constant && variable && globals.size > 0 {
                        input_runs(&globals, offset, &usages, usage_min, usage_max, &mut field);
                    }
                }
                usages.clear();
                usage_min = None;
                usage_max = None;
            }
            // Global items.
            1 => match prefix >> 4 {
                0x0 => globals.page = value as u16,
                0x7 => globals.size = value,
                0x8 => {
                    globals.id = value as u8;
                    numbered = true;
                }
                0x9 => globals.count = value,
                0xA => stack
                    .push(globals)
                    .map_err(|_| DescriptorError::Stack(item_at))?,
                0xB => globals = stack.pop().ok_or(DescriptorError::Stack(item_at))?,
                _ => {}
            },
            // Local items.
            2 => match prefix >> 4 {
                0x0 => {
                    // Past LOCAL_USAGES the extra usages are dropped; fields beyond repeat
                    // the last kept one, which only affects descriptors no scanner sends.
                    let _ = usages.push(local_usage(value, globals.page));
                }
                0x1 => usage_min = Some(local_usage(value, globals.page)),
                0x2 => usage_max = Some(local_usage(value, globals.page)),
                _ => {}
            },
            _ => {}
        }
    }
    Ok((bits, numbered))
}

/// Splits one Input item's fields into runs that share a usage.
fn input_runs(
    globals: &Globals,
    offset: u32,
    usages: &[u32],
    usage_min: Option<u32>,
    usage_max: Option<u32>,
    field: &mut impl FnMut(Run),
) {
    let run = |usage, first: u32, count| Run {
        id: globals.id,
        usage,
        offset: offset + first * globals.size,
        size: globals.size,
        count,
    };
    let count = globals.count;
    if !usages.is_empty() {
        // Fields take the listed usages in order; the last usage repeats for the rest.
        let listed = (usages.len() as u32).min(count);
        for (i, &u) in usages.iter().take(listed as usize).enumerate() {
            let i = i as u32;
            let n = if i + 1 == listed { count - i } else { 1 };
            field(run(u, i, n));
        }
    } else if let (Some(min), Some(max)) = (usage_min, usage_max) {
        let span = max.saturating_sub(min).saturating_add(1).min(count);
        for i in 0..span.min(LOCAL_USAGES as u32) {
            let n = if i + 1 == span { count - i } else { 1 };
            field(run(min + i, i, n));
        }
    }
}

impl ReportLayout {
    /// Reads where the scan fields are from a report descriptor.
    pub fn parse(descriptor: &[u8]) -> Result<Self, DescriptorError> {
        // First pass: which report carries Decoded Data.
        let mut data_id = None;
        walk(descriptor, |run| {
            if run.usage == USAGE_DECODED_DATA && data_id.is_none() {
                data_id = Some(run.id);
            }
        })?;
        let id = data_id.ok_or(DescriptorError::NoDecodedData)?;
        // Second pass: the fields of that report.
        let mut data: Option<(u32, u32)> = None;
        let mut unaligned = false;
        let mut byte_count = None;
        let mut symbology = [None; 3];
        let mut continued = None;
        let (bits, numbered) = walk(descriptor, |run| {
            if run.id != id {
                return;
            }
            let one = BitField {
                offset: run.offset,
                size: run.size.min(32) as u8,
            };
            match run.usage {
                USAGE_DECODED_DATA => {
                    if run.size != 8 || run.offset % 8 != 0 {
                        unaligned |= data.is_none();
                        return;
                    }
                    match &mut data {
                        None => data = Some((run.offset, run.count)),
                        // A second Decoded Data item right after the first extends it.
                        Some((start, count)) if *start + *count * 8 == run.offset => {
                            *count += run.count
                        }
                        Some(_) => {}
                    }
                }
                USAGE_SYMBOLOGY_ID_1 | USAGE_SYMBOLOGY_ID_2 | USAGE_SYMBOLOGY_ID_3 => {
                    let slot = (run.usage - USAGE_SYMBOLOGY_ID_1) as usize;
                    if symbology[slot].is_none() && run.size == 8 {
                        symbology[slot] = Some(one);
                    }
                }
                USAGE_DECODE_DATA_CONTINUED if continued.is_none() => continued = Some(one),
                USAGE_BYTE_COUNT if byte_count.is_none() && run.size <= 16 => {
                    byte_count = Some(one)
                }
                _ => {}
            }
        })?;
        if unaligned {
            return Err(DescriptorError::Unaligned);
        }
        let (start, count) = data.ok_or(DescriptorError::Unaligned)?;
        let mut input_ids = [0u8; 32];
        for (i, &b) in bits.iter().enumerate() {
            if b > 0 {
                input_ids[i / 8] |= 1 << (i % 8);
            }
        }
        let mut end = start + count * 8;
        for f in [byte_count, continued]
            .into_iter()
            .chain(symbology)
            .flatten()
        {
            end = end.max(f.end());
        }
        Ok(ReportLayout {
            numbered,
            id,
            input_ids,
            data_start: (start / 8) as usize,
            data_len: count as usize,
            byte_count,
            symbology,
            continued,
            min_len: end.div_ceil(8) as usize,
        })
    }

    /// The size of the Decoded Data field, in bytes.
    pub fn data_capacity(&self) -> usize {
        self.data_len
    }

    /// Whether reports carry a Decode Data Continued flag (codes can span reports).
    pub fn has_continuation(&self) -> bool {
        self.continued.is_some()
    }

    /// Whether reports carry symbology identifier fields.
    pub fn has_symbology(&self) -> bool {
        self.symbology.iter().any(Option::is_some)
    }

    /// Whether reports carry a Byte Count field.
    pub fn has_byte_count(&self) -> bool {
        self.byte_count.is_some()
    }

    /// The report ID of the scanned data report, when the descriptor numbers its reports.
    pub fn report_id(&self) -> Option<u8> {
        self.numbered.then_some(self.id)
    }

    /// Picks one report, as read from hidraw (with its report ID byte when numbered), apart.
    pub fn decode<'a>(&self, report: &'a [u8]) -> Result<Decoded<'a>, ReportFault> {
        let body = if self.numbered {
            let (&id, body) = report.split_first().ok_or(ReportFault::Empty)?;
            if id != self.id {
                return if self.input_ids[usize::from(id / 8)] >> (id % 8) & 1 == 1 {
                    Ok(Decoded::Other)
                } else {
                    Err(ReportFault::UnknownId { id })
                };
            }
            body
        } else {
            report
        };
        if body.is_empty() {
            return Err(ReportFault::Empty);
        }
        if body.len() < self.min_len {
            return Err(ReportFault::Short {
                len: body.len(),
                want: self.min_len,
            });
        }
        // In bounds: min_len covers every field.
        let field = &body[self.data_start..self.data_start + self.data_len];
        let data = match self.byte_count.and_then(|f| f.read(body)) {
            Some(count) => match usize::try_from(count) {
                Ok(n) if n <= field.len() => &field[..n],
                _ => {
                    return Err(ReportFault::ByteCount {
                        count,
                        capacity: field.len(),
                    });
                }
            },
            None => {
                let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
                &field[..end]
            }
        };
        let mut symbology = [0u8; 3];
        for (out, f) in symbology.iter_mut().zip(self.symbology) {
            *out = f.and_then(|f| f.read(body)).unwrap_or(0) as u8;
        }
        let continued = self
            .continued
            .and_then(|f| f.read(body))
            .is_some_and(|v| v & 1 == 1);
        Ok(Decoded::Scan(Piece {
            data,
            symbology,
            continued,
        }))
    }
}

impl fmt::Display for ReportLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.report_id() {
            Some(id) => write!(f, "report {id}")?,
            None => write!(f, "unnumbered report")?,
        }
        write!(f, ", {} data bytes", self.data_len)?;
        if self.has_byte_count() {
            write!(f, ", byte count")?;
        }
        if self.has_symbology() {
            write!(f, ", symbology id")?;
        }
        if self.has_continuation() {
            write!(f, ", continuation")?;
        }
        Ok(())
    }
}

/// The AIM identifier in a report's three Symbology Identifier bytes: `]`, letter, modifier
/// (the form the Usage Tables' scanners send), or letter and modifier without the bracket.
/// Zeros (none sent) or anything else give `None`; the code itself is still good.
pub fn aim_symbology(bytes: [u8; 3]) -> Option<super::Symbology> {
    let make = |code: u8, modifier: u8| {
        (code.is_ascii_alphabetic() && modifier.is_ascii_alphanumeric())
            .then_some(super::Symbology { code, modifier })
    };
    match bytes {
        [b']', code, modifier] => make(code, modifier),
        [code, modifier, _] => make(code, modifier),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Honeywell's HID POS report descriptor as its firmware declares it (the scanned data
    /// report and the trigger output report; the vendor feature reports left out).
    const HONEYWELL: &[u8] = &[
        0x05, 0x8c, 0x09, 0x02, 0xa1, 0x01, 0x09, 0x12, 0xa1, 0x02, 0x85, 0x02, 0x15, 0x00, 0x26,
        0xff, 0x00, 0x75, 0x08, 0x95, 0x01, 0x05, 0x01, 0x09, 0x3b, 0x81, 0x02, 0x95, 0x03, 0x05,
        0x8c, 0x09, 0xfb, 0x09, 0xfc, 0x09, 0xfd, 0x81, 0x02, 0x95, 0x38, 0x09, 0xfe, 0x82, 0x02,
        0x01, 0x06, 0x66, 0xff, 0x95, 0x02, 0x09, 0x04, 0x09, 0x00, 0x81, 0x02, 0x05, 0x8c, 0x25,
        0x01, 0x75, 0x01, 0x95, 0x08, 0x09, 0xff, 0x81, 0x02, 0xc0, 0x09, 0x14, 0xa1, 0x02, 0x85,
        0x04, 0x15, 0x00, 0x25, 0x01, 0x75, 0x01, 0x95, 0x08, 0x09, 0x00, 0x09, 0x5f, 0x09, 0x60,
        0x09, 0x00, 0x09, 0x00, 0x09, 0x85, 0x09, 0x86, 0x91, 0x86, 0xc0, 0xc0,
    ];

    fn honeywell_report(aim: &[u8; 3], data: &[u8], continued: bool) -> Vec<u8> {
        let mut r = vec![0x02, data.len() as u8];
        r.extend_from_slice(aim);
        let mut field = data.to_vec();
        field.resize(56, 0);
        r.extend(field);
        r.extend([0x6a, 0x00, u8::from(continued)]);
        r
    }

    #[test]
    fn usage_ids_match_the_usage_tables() {
        assert_eq!(USAGE_DECODED_DATA, 0x008C_00FE);
        assert_eq!(USAGE_SYMBOLOGY_ID_1, 0x008C_00FB);
        assert_eq!(USAGE_SYMBOLOGY_ID_3, 0x008C_00FD);
        assert_eq!(USAGE_DECODE_DATA_CONTINUED, 0x008C_00FF);
        assert_eq!(USAGE_SCANNED_DATA_REPORT, 0x008C_0012);
        assert_eq!(USAGE_BYTE_COUNT, 0x0001_003B);
    }

    #[test]
    fn honeywell_layout_is_found_in_its_descriptor() {
        let layout = ReportLayout::parse(HONEYWELL).unwrap();
        assert_eq!(layout.report_id(), Some(2));
        assert_eq!(layout.data_capacity(), 56);
        assert_eq!(layout.data_start, 4);
        assert!(layout.has_byte_count() && layout.has_symbology() && layout.has_continuation());
        assert_eq!(
            layout.continued,
            Some(BitField {
                offset: 62 * 8,
                size: 1
            })
        );
        let report = honeywell_report(b"]Q1", b"123456789012", false);
        let Ok(Decoded::Scan(piece)) = layout.decode(&report) else {
            panic!("not a scan");
        };
        assert_eq!(piece.data, b"123456789012");
        assert_eq!(piece.symbology, *b"]Q1");
        assert!(!piece.continued);
        assert!(
            layout
                .decode(&honeywell_report(b"]Q1", b"1", true))
                .is_ok_and(|d| matches!(d, Decoded::Scan(p) if p.continued))
        );
    }

    #[test]
    fn bad_reports_have_reasons() {
        let layout = ReportLayout::parse(HONEYWELL).unwrap();
        assert_eq!(layout.decode(&[]), Err(ReportFault::Empty));
        assert_eq!(layout.decode(&[2]), Err(ReportFault::Empty));
        assert_eq!(
            layout.decode(&[9, 1, 2]),
            Err(ReportFault::UnknownId { id: 9 })
        );
        assert_eq!(
            layout.decode(&[2, 1, 2]),
            Err(ReportFault::Short { len: 2, want: 63 })
        );
        let mut report = honeywell_report(b"]Q1", b"12", false);
        report[1] = 57;
        assert_eq!(
            layout.decode(&report),
            Err(ReportFault::ByteCount {
                count: 57,
                capacity: 56
            })
        );
    }

    #[test]
    fn descriptors_that_do_not_add_up_are_errors() {
        assert_eq!(
            ReportLayout::parse(&[0x05, 0x01, 0x09, 0x06, 0xa1, 0x01, 0xc0]),
            Err(DescriptorError::NoDecodedData)
        );
        assert_eq!(
            ReportLayout::parse(&[0x05, 0x8c, 0x26]),
            Err(DescriptorError::Truncated(2))
        );
        assert_eq!(ReportLayout::parse(&[0xb4]), Err(DescriptorError::Stack(0)));
        // Report count 0xFFFFFFFF of 8 bits: refused, not looped over.
        assert_eq!(
            ReportLayout::parse(&[
                0x05, 0x8c, 0x75, 0x08, 0x97, 0xff, 0xff, 0xff, 0xff, 0x09, 0xfe, 0x81, 0x02
            ]),
            Err(DescriptorError::ReportTooLong { id: 0 })
        );
        // Decoded Data in 4-bit fields.
        assert_eq!(
            ReportLayout::parse(&[0x05, 0x8c, 0x75, 0x04, 0x95, 0x02, 0x09, 0xfe, 0x81, 0x02]),
            Err(DescriptorError::Unaligned)
        );
    }

    #[test]
    fn aim_ids_with_and_without_the_bracket() {
        let q1 = Some(crate::scanner::Symbology {
            code: b'Q',
            modifier: b'1',
        });
        assert_eq!(aim_symbology(*b"]Q1"), q1);
        assert_eq!(aim_symbology([b'Q', b'1', 0]), q1);
        assert_eq!(aim_symbology([0, 0, 0]), None);
        assert_eq!(aim_symbology([b']', 0xff, b'1']), None);
    }
}

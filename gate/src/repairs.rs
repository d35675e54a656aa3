//! Header repairs for damaged files that players accept and GStreamer's demuxers do
//! not: each names the damage, finds it in the file's head and says which bytes to
//! read instead. They are applied to the bytes a pipeline reads, never to the upload.

use std::io::Read;
use std::path::Path;

use gstreamer as gst;

/// Bytes to read at an offset of the file instead of what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    pub offset: u64,
    pub bytes: Vec<u8>,
}

impl Patch {
    /// Writes the patch into a buffer read from the file, where the two overlap.
    pub fn apply(&self, buffer: &mut gst::Buffer) {
        let start = buffer.offset();
        // Buffers that do not say where they were read from are left as they are.
        if start == u64::MAX {
            return;
        }
        let end = start + buffer.size() as u64;
        let (from, to) = (
            self.offset.max(start),
            (self.offset + self.bytes.len() as u64).min(end),
        );
        if from >= to {
            return;
        }
        let buffer = buffer.make_mut();
        let Ok(mut map) = buffer.map_writable() else {
            return;
        };
        let (dst, src) = ((from - start) as usize, (from - self.offset) as usize);
        let n = (to - from) as usize;
        map[dst..dst + n].copy_from_slice(&self.bytes[src..src + n]);
    }
}

/// The repair a file needs, from its first bytes.
pub fn for_file(path: &Path) -> Option<Patch> {
    let mut head = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(64 * 1024)
        .read_to_end(&mut head)
        .ok()?;
    asf_header_count(&head)
}

const ASF_HEADER: [u8; 16] = [
    0x30, 0x26, 0xb2, 0x75, 0x8e, 0x66, 0xcf, 0x11, 0xa6, 0xd9, 0x00, 0xaa, 0x00, 0x62, 0xce, 0x6c,
];

/// An ASF header that counts more objects than it holds (some Windows Media encoders
/// wrote one too many): asfdemux waits for the missing one and fails the file, which
/// every player plays. The count is read as the number of objects really there.
pub fn asf_header_count(head: &[u8]) -> Option<Patch> {
    if head.len() < 30 || head[..16] != ASF_HEADER {
        return None;
    }
    let size = u64::from_le_bytes(head[16..24].try_into().ok()?);
    let stated = u32::from_le_bytes(head[24..28].try_into().ok()?);
    let end = size.min(head.len() as u64);
    let (mut pos, mut found) = (30u64, 0u32);
    while pos + 24 <= end {
        let at = pos as usize;
        let object = u64::from_le_bytes(head[at + 16..at + 24].try_into().ok()?);
        if object < 24 || pos + object > size {
            break;
        }
        pos += object;
        found += 1;
    }
    // Only a header read whole, whose objects fill it exactly, is repaired.
    (pos == size && found > 0 && found < stated).then(|| Patch {
        offset: 24,
        bytes: found.to_le_bytes().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asf(stated: u32, objects: &[u64]) -> Vec<u8> {
        let size = 30 + objects.iter().sum::<u64>();
        let mut head = ASF_HEADER.to_vec();
        head.extend(size.to_le_bytes());
        head.extend(stated.to_le_bytes());
        head.extend([1, 2]);
        for len in objects {
            let mut object = vec![0xab; (*len).max(24) as usize];
            object[16..24].copy_from_slice(&len.to_le_bytes());
            head.extend(object);
        }
        head
    }

    #[test]
    fn an_asf_header_that_counts_one_object_too_many_is_read_with_its_real_count() {
        assert_eq!(
            asf_header_count(&asf(6, &[104, 156, 133, 114, 196])),
            Some(Patch {
                offset: 24,
                bytes: 5u32.to_le_bytes().to_vec()
            })
        );
        assert_eq!(
            asf_header_count(&asf(5, &[104, 156, 133, 114, 196])),
            None,
            "a right count stays"
        );
        assert_eq!(
            asf_header_count(&asf(9, &[104, 20])),
            None,
            "a broken object list is not guessed at"
        );
        assert_eq!(asf_header_count(b"RIFF....AVI LIST"), None);
    }

    #[test]
    fn a_patch_lands_where_a_buffer_overlaps_it() {
        gst::init().unwrap();
        let patch = Patch {
            offset: 24,
            bytes: vec![5, 0, 0, 0],
        };
        let mut whole = gst::Buffer::from_mut_slice(vec![9u8; 64]);
        whole.get_mut().unwrap().set_offset(0);
        patch.apply(&mut whole);
        assert_eq!(
            &whole.map_readable().unwrap()[22..30],
            &[9, 9, 5, 0, 0, 0, 9, 9]
        );
        let mut tail = gst::Buffer::from_mut_slice(vec![9u8; 8]);
        tail.get_mut().unwrap().set_offset(26);
        patch.apply(&mut tail);
        assert_eq!(&tail.map_readable().unwrap()[..4], &[0, 0, 9, 9]);
        let mut later = gst::Buffer::from_mut_slice(vec![9u8; 8]);
        later.get_mut().unwrap().set_offset(4096);
        patch.apply(&mut later);
        assert_eq!(&later.map_readable().unwrap()[..], &[9; 8]);
    }
}

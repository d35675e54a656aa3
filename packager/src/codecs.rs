//! RFC 6381 codec strings, read from the stream itself.

/// AAC-LC, the only audio codec Lectern writes.
pub const AAC_LC: &str = "mp4a.40.2";

/// The `avc1.PPCCLL` codec string of an H.264 stream, read from the first sequence
/// parameter set in an Annex B access unit (or a bare SPS NAL unit).
pub fn avc1_codec_string(data: &[u8]) -> Option<String> {
    let sps = nal_units(data).find(|nal| nal.first().map(|b| b & 0x1f) == Some(7))?;
    let (profile, constraints, level) = (*sps.get(1)?, *sps.get(2)?, *sps.get(3)?);
    Some(format!("avc1.{profile:02x}{constraints:02x}{level:02x}"))
}

/// NAL units of an Annex B byte stream; data without a start code is one NAL unit.
fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    if starts.is_empty() {
        return vec![data].into_iter();
    }
    let mut units = Vec::with_capacity(starts.len());
    for (n, &start) in starts.iter().enumerate() {
        let mut end = starts.get(n + 1).map(|next| next - 3).unwrap_or(data.len());
        // A 4-byte start code leaves one zero byte behind the previous unit.
        while end > start && data[end - 1] == 0 && starts.get(n + 1).is_some() {
            end -= 1;
        }
        units.push(&data[start..end]);
    }
    units.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_profile_and_level_from_annex_b() {
        // AUD, then SPS: High (100), no constraints, level 3.1 (31 = 0x1f).
        let au = [
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x67, 100, 0, 31, 0xac, 0, 0, 1, 0x68, 0xeb,
        ];
        assert_eq!(avc1_codec_string(&au).as_deref(), Some("avc1.64001f"));
    }

    #[test]
    fn reads_constrained_baseline_bare_sps() {
        assert_eq!(
            avc1_codec_string(&[0x67, 66, 0xc0, 13]).as_deref(),
            Some("avc1.42c00d")
        );
    }

    #[test]
    fn no_sps_gives_none() {
        assert_eq!(avc1_codec_string(&[0, 0, 1, 0x65, 1, 2, 3]), None);
        assert_eq!(avc1_codec_string(&[0, 0, 1, 0x67, 100]), None);
        assert_eq!(avc1_codec_string(&[]), None);
    }
}

//! Why a file cannot become a lecture, in a fixed vocabulary for people. What went
//! wrong in detail (GStreamer's words, paths, offsets) goes to the log and the owner's
//! diagnostics, never into these texts: they are shown to students too, and a detail
//! would tell an uploader about the server's insides.

use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "refusal", content = "value", rename_all = "snake_case")]
pub enum Refusal {
    #[error("not a video or audio file")]
    NotMedia,
    #[error("this file type is not accepted: {0}")]
    TypeNotAccepted(TypeName),
    #[error("this codec is not accepted")]
    CodecNotAccepted,
    #[error("the file is a still image, not a video")]
    StillImage,
    #[error("the file is cut short or damaged: no audio or video could be read")]
    NoStreams,
    #[error("the file is cut short: it holds less media than it states")]
    CutShort,
    #[error("the file is damaged and cannot be decoded")]
    Damaged,
    #[error("the video stream has no picture size")]
    NoPictureSize,
    #[error("the video is larger than {0}x{1} pixels")]
    TooLarge(u32, u32),
    #[error("the frame rate is above {0} frames a second")]
    FrameRateTooHigh(u32),
    #[error("the recording is longer than {0} hours")]
    TooLong(u32),
    #[error("the video has too long a gap between pictures (over {0} s)")]
    GapTooLong(u32),
    #[error("the file could not be processed in time")]
    Timeout,
    #[error("the file made the decoder fail")]
    DecoderFailed,
    #[error("the file could not be read")]
    Unreadable,
}

/// The name of a refused file type: one of the names this build knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TypeName(pub &'static str);

impl std::fmt::Display for TypeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Read back onto the known names: a compromised child cannot put words of its own
/// into a reason.
impl<'de> Deserialize<'de> for TypeName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(TypeName(
            crate::formats::refused_type_names()
                .find(|known| *known == name)
                .unwrap_or("this format"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_cross_the_fence_but_only_known_words_do() {
        let r = Refusal::TypeNotAccepted(TypeName("an HLS playlist"));
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Refusal>(&json).unwrap(), r);
        let forged = r#"{"refusal":"type_not_accepted","value":"port 5432 open at 10.0.0.7"}"#;
        let read = serde_json::from_str::<Refusal>(forged).unwrap();
        assert_eq!(
            read.to_string(),
            "this file type is not accepted: this format"
        );
        assert_eq!(
            Refusal::TooLarge(8192, 4320).to_string(),
            "the video is larger than 8192x4320 pixels"
        );
    }
}

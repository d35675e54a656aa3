//! Which files are accepted, decided from their own bytes: the containers course
//! videos really come in (old ones included), the elements allowed to take them apart,
//! and the codecs allowed to be decoded. Everything not named here is refused.

use std::io::Read;
use std::path::Path;

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::Refusal;
use crate::refusal::TypeName;

/// A container (or bare stream) an upload may be. The name is what people call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Container {
    pub name: &'static str,
    /// GStreamer type-finder caps names that mean this container.
    caps: &'static [&'static str],
}

/// Accepted containers. MP4/MOV/3GP and Matroska/WebM are today's files; ASF/WMV
/// (PowerPoint's old video export), AVI, FLV, MPEG-PS (DVD, camcorders), MPEG-TS
/// (AVCHD), Ogg, RealMedia and DV are what older archives hold; the audio-only ones are
/// recorded lectures without a picture.
pub const CONTAINERS: &[Container] = &[
    Container {
        name: "MP4/QuickTime/3GP",
        caps: &["video/quicktime", "audio/x-m4a", "application/x-3gp"],
    },
    Container {
        name: "Matroska/WebM",
        caps: &[
            "video/x-matroska",
            "video/webm",
            "audio/webm",
            "audio/x-matroska",
        ],
    },
    Container {
        name: "AVI",
        caps: &["video/x-msvideo"],
    },
    Container {
        name: "ASF/WMV",
        caps: &["video/x-ms-asf"],
    },
    Container {
        name: "FLV",
        caps: &["video/x-flv"],
    },
    Container {
        name: "MPEG-TS",
        caps: &["video/mpegts"],
    },
    // Program streams and bare MPEG-1/2 video share a caps name (systemstream tells).
    Container {
        name: "MPEG-PS/MPEG video",
        caps: &["video/mpeg"],
    },
    Container {
        name: "Ogg",
        caps: &["application/ogg", "video/ogg", "audio/ogg"],
    },
    Container {
        name: "RealMedia",
        caps: &["application/vnd.rn-realmedia"],
    },
    Container {
        name: "DV",
        caps: &["video/x-dv"],
    },
    Container {
        name: "MP3/AAC audio",
        caps: &["application/x-id3", "application/x-apetag", "audio/mpeg"],
    },
    Container {
        name: "WAV",
        caps: &["audio/x-wav"],
    },
    Container {
        name: "AIFF",
        caps: &["audio/x-aiff"],
    },
    Container {
        name: "FLAC",
        caps: &["audio/x-flac"],
    },
];

/// The demuxers (and tag readers) that may open an upload. No adaptive-streaming,
/// playlist, network or "reads other files" element is here: hlsdemux, dashdemux,
/// mssdemux, sdpdemux, splitmuxsrc, the libav demuxers and the like can never be
/// plugged into a pipeline that touches an upload.
pub const DEMUXERS: &[&str] = &[
    "qtdemux",
    "matroskademux",
    "avidemux",
    "asfdemux",
    "flvdemux",
    "tsdemux",
    "mpegpsdemux",
    "oggdemux",
    "rmdemux",
    "dvdemux",
    "id3demux",
    "apedemux",
    "wavparse",
    "aiffparse",
];

/// Stream parsers that may sit between a demuxer and a decoder.
pub const PARSERS: &[&str] = &[
    "h264parse",
    "h265parse",
    "h263parse",
    "mpegvideoparse",
    "mpeg4videoparse",
    "vc1parse",
    "av1parse",
    "vp9parse",
    "jpegparse",
    "aacparse",
    "mpegaudioparse",
    "ac3parse",
    "dcaparse",
    "flacparse",
    "amrparse",
    "wavpackparse",
    "vorbisparse",
    "theoraparse",
    "opusparse",
];

/// Codecs (the caps names of encoded streams) that may be decoded.
pub const VIDEO_CODECS: &[&str] = &[
    "video/x-h264",
    "video/x-h265",
    "video/x-vp8",
    "video/x-vp9",
    "video/x-av1",
    "video/mpeg", // MPEG-1, MPEG-2 and MPEG-4 part 2
    "video/x-divx",
    "video/x-xvid",
    "video/x-msmpeg",
    "video/x-wmv",
    "video/x-h263",
    "image/jpeg", // Motion JPEG
    "video/x-theora",
    "video/x-flash-video",
    "video/x-vp6",
    "video/x-vp6-flash",
    "video/x-vp6-alpha",
    "video/x-prores",
    "video/x-dv",
    "video/x-indeo",
    "video/x-cinepak",
    "video/x-rle",
    "video/x-msvideocodec",
    "video/x-huffyuv",
    "video/x-ffv",
    "video/x-pn-realvideo",
    "video/x-svq",
    "video/x-qt-rpza",
];

pub const AUDIO_CODECS: &[&str] = &[
    "audio/mpeg", // MP1/2/3 and AAC
    "audio/x-vorbis",
    "audio/x-opus",
    "audio/x-flac",
    "audio/x-ac3",
    "audio/x-eac3",
    "audio/ac3",
    "audio/x-private1-ac3",
    "audio/x-dts",
    "audio/x-private1-dts",
    "audio/x-wma",
    "audio/x-alaw",
    "audio/x-mulaw",
    "audio/x-adpcm",
    "audio/AMR",
    "audio/AMR-WB",
    "audio/x-alac",
    "audio/x-speex",
    "audio/x-nellymoser",
    "audio/x-pn-realaudio",
    "audio/x-lpcm",
    "audio/x-private1-lpcm",
    "audio/x-qdm2",
    "audio/x-gsm",
    "audio/x-wavpack",
];

/// Bytes read from the head of a file to decide its type (MPEG-TS and MP3 need a few
/// packets or frames; every accepted container says what it is well before this).
const SNIFF_BYTES: u64 = 1 << 20;

/// Names for the refused types people are likely to upload by mistake or on purpose.
const REFUSED_NAMES: &[(&str, &str)] = &[
    ("application/x-hls", "an HLS playlist"),
    ("application/dash+xml", "a DASH manifest"),
    ("application/vnd.ms-sstr+xml", "a Smooth Streaming manifest"),
    ("application/sdp", "an SDP session description"),
    ("text/uri-list", "a list of addresses"),
    ("application/smil", "a SMIL playlist"),
    ("application/xspf+xml", "a playlist"),
    ("audio/x-mpegurl", "a playlist"),
    ("application/mxf", "MXF"),
];

/// Every name a refused type may be given in a reason.
pub fn refused_type_names() -> impl Iterator<Item = &'static str> {
    REFUSED_NAMES
        .iter()
        .map(|(_, human)| *human)
        .chain([OTHER_MEDIA_FORMAT])
}

const OTHER_MEDIA_FORMAT: &str = "this audio or video format";

/// The container of the file at `path`, from its first bytes alone (never its name).
pub fn sniff(path: &Path) -> Result<Container, Refusal> {
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(SNIFF_BYTES).read_to_end(&mut head))
        .map_err(|e| {
            tracing::warn!(error = %e, "reading an upload's head failed");
            Refusal::Unreadable
        })?;
    sniff_bytes(&head)
}

pub fn sniff_bytes(head: &[u8]) -> Result<Container, Refusal> {
    crate::init()?;
    if head.is_empty() {
        return Err(Refusal::NotMedia);
    }
    let (caps, _) =
        gstreamer_base::functions::type_find_helper_for_data(None::<&gst::Object>, head)
            .map_err(|_| Refusal::NotMedia)?;
    let s = caps.structure(0).ok_or(Refusal::NotMedia)?;
    let name = s.name().as_str();
    if let Some(c) = CONTAINERS.iter().find(|c| c.caps.contains(&name)) {
        return Ok(*c);
    }
    if let Some((_, human)) = REFUSED_NAMES.iter().find(|(caps, _)| *caps == name) {
        return Err(Refusal::TypeNotAccepted(TypeName(human)));
    }
    Err(match name.split('/').next() {
        Some("image") => Refusal::StillImage,
        Some("video" | "audio") => Refusal::TypeNotAccepted(TypeName(OTHER_MEDIA_FORMAT)),
        _ => Refusal::NotMedia,
    })
}

/// Whether a pipeline that touches an upload may plug this element for a stream with
/// these caps: named demuxers and parsers, and decoders of named codecs.
pub fn may_plug(factory: &gst::ElementFactory, caps: &gst::CapsRef) -> bool {
    let name = factory.name();
    let klass = factory
        .metadata(gst::ELEMENT_METADATA_KLASS)
        .unwrap_or_default();
    if DEMUXERS.contains(&name.as_str()) || PARSERS.contains(&name.as_str()) {
        return true;
    }
    if !klass.contains("Decoder") {
        return false;
    }
    let codec = caps
        .structure(0)
        .map(|s| s.name().as_str())
        .unwrap_or_default();
    (klass.contains("Video") && VIDEO_CODECS.contains(&codec))
        || (klass.contains("Audio") && AUDIO_CODECS.contains(&codec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_manifests_and_address_lists_are_refused_by_their_bytes() {
        let hls = b"#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\nhttp://127.0.0.1:9/a.ts\n#EXT-X-ENDLIST\n";
        assert_eq!(
            sniff_bytes(hls),
            Err(Refusal::TypeNotAccepted(TypeName("an HLS playlist")))
        );
        let dash = br#"<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011"><BaseURL>http://127.0.0.1/</BaseURL></MPD>"#;
        // GStreamer's XML type finder names a DASH manifest only when it sees the root
        // element early enough; either way it is refused.
        assert!(matches!(
            sniff_bytes(dash),
            Err(Refusal::TypeNotAccepted(TypeName("a DASH manifest")) | Refusal::NotMedia)
        ));
        assert_eq!(
            sniff_bytes(b"http://127.0.0.1:9/x.mp4\n"),
            Err(Refusal::TypeNotAccepted(TypeName("a list of addresses")))
        );
        let sdp = b"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=video 5004 RTP/AVP 96\n";
        assert_eq!(
            sniff_bytes(sdp),
            Err(Refusal::TypeNotAccepted(TypeName(
                "an SDP session description"
            )))
        );
        assert_eq!(sniff_bytes(b""), Err(Refusal::NotMedia));
        assert_eq!(sniff_bytes(&[0x5a; 4096]), Err(Refusal::NotMedia));
    }

    #[test]
    fn no_network_or_playlist_element_may_be_plugged() {
        crate::init().unwrap();
        let any = gst::Caps::new_any();
        for name in [
            "hlsdemux",
            "hlsdemux2",
            "dashdemux",
            "dashdemux2",
            "mssdemux",
            "sdpdemux",
            "splitmuxsrc",
            "souphttpsrc",
            "avdemux_mxf",
        ] {
            if let Some(f) = gst::ElementFactory::find(name) {
                assert!(!may_plug(&f, &any), "{name} must not be pluggable");
            }
        }
        let h264 = gst::Caps::builder("video/x-h264").build();
        let decoder = gst::ElementFactory::find("avdec_h264").expect("libav is installed");
        assert!(may_plug(&decoder, &h264));
        let qt = gst::ElementFactory::find("qtdemux").expect("isomp4 is installed");
        assert!(may_plug(&qt, &any));
        // A decoder is judged by the codec it would decode, not only by its class.
        let subtitles = gst::Caps::builder("subpicture/x-dvd").build();
        if let Some(f) = gst::ElementFactory::find("dvdsubdec") {
            assert!(!may_plug(&f, &subtitles));
        }
    }
}

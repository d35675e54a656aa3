//! The only ways a pipeline may take an upload apart: `decodebin` and `parsebin` that
//! plug nothing but the elements `formats` names. The refusal is structural: an
//! element that is not named is never created, whatever the file's bytes say.

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::formats::may_plug;

/// decodebin's GstAutoplugSelectResult: try the factory, or skip it.
const TRY: i32 = 0;
const SKIP: i32 = 2;

/// A `decodebin` restricted to the accepted demuxers, parsers and decoders. Handlers
/// connected to `autoplug-select` later run only for factories this one let through.
pub fn decodebin() -> Result<gst::Element, gst::glib::BoolError> {
    restricted("decodebin")
}

/// A `parsebin` (demuxing and parsing, no decoding) with the same restriction.
pub fn parsebin() -> Result<gst::Element, gst::glib::BoolError> {
    restricted("parsebin")
}

fn restricted(factory: &str) -> Result<gst::Element, gst::glib::BoolError> {
    let bin = gst::ElementFactory::make(factory).build()?;
    let select = gst::glib::Type::from_name("GstAutoplugSelectResult")
        .and_then(gst::glib::EnumClass::with_type)
        .ok_or_else(|| gst::glib::bool_error!("GstAutoplugSelectResult is not registered"))?;
    bin.connect("autoplug-select", false, move |args| {
        let caps = args.get(2).and_then(|v| v.get::<gst::Caps>().ok());
        let factory = args
            .get(3)
            .and_then(|v| v.get::<gst::ElementFactory>().ok());
        let allowed = matches!((&factory, &caps), (Some(f), Some(c)) if may_plug(f, c));
        if !allowed {
            let name = factory.map(|f| f.name().to_string()).unwrap_or_default();
            tracing::info!(
                element = name,
                "an upload asked for an element that is not accepted"
            );
        }
        select.to_value(if allowed { TRY } else { SKIP })
    });
    Ok(bin)
}

/// `filesrc` for an upload, with the header repairs `repairs` knows applied to the
/// bytes as they pass (the file on disk is not touched).
pub fn file_source(path: &std::path::Path) -> Result<gst::Element, gst::glib::BoolError> {
    let src = gst::ElementFactory::make("filesrc")
        .property("location", path.to_string_lossy().to_string())
        .build()?;
    let Some(patch) = crate::repairs::for_file(path) else {
        return Ok(src);
    };
    let pad = src.static_pad("src").expect("filesrc has a src pad");
    // Demuxers read headers in pull mode (getrange) and then push: patch both ways.
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::PULL | gst::PadProbeType::PUSH,
        move |_, info| {
            if let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data {
                patch.apply(buffer);
            }
            gst::PadProbeReturn::Ok
        },
    );
    Ok(src)
}

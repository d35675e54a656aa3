//! `X264Encoder`: H.264 with libx264, as gst-plugins-ugly's `x264enc` makes it (the
//! same preset, options, rate control, profile and VUI: the streams are identical byte
//! for byte), but holding no input frames. x264 copies each picture into its own frame
//! pool before `x264_encoder_encode` returns; `x264enc` still keeps the input buffer
//! until the frame's output comes, x264's delay later (5-6 frames at Lectern's
//! settings). Here each input buffer is released as soon as x264 has its copy: 14 MiB
//! of a five-rung 1080p ladder's peak (bench/results/2026-12-06-0601-*). Built into the
//! binary, not a plugin; the pipeline makes it with `X264Encoder::new`. The C side is
//! `x264_shim.c`.

use std::ffi::{CString, c_char, c_int};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::glib::translate::{IntoGlibPtr, ToGlibPtr};
use gstreamer::prelude::*;
use gstreamer::subclass::prelude::*;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use gstreamer_video::subclass::prelude::*;

/// What to encode with: x264's names, as `x264enc`'s properties take them.
#[derive(Clone, Debug, PartialEq)]
pub struct X264Settings {
    pub preset: String,
    /// `key=value` pairs split by `:`, applied after the preset.
    pub options: String,
    pub profile: String,
    pub threads: u32,
    pub sliced_threads: bool,
    pub keyint_max: u32,
    /// The average bit rate, or the ceiling of constant quality.
    pub bitrate_kbps: u32,
    pub vbv_ms: u32,
    /// Constant quality (x264's CRF) with `bitrate_kbps` as its ceiling.
    pub crf: Option<u32>,
}

glib::wrapper! {
    pub struct X264Encoder(ObjectSubclass<imp::X264Encoder>)
        @extends gst_video::VideoEncoder, gst::Element, gst::Object;
}

impl X264Encoder {
    pub fn new(settings: X264Settings) -> Self {
        let encoder: Self = glib::Object::new();
        *encoder.imp().settings.lock().expect("settings lock") = Some(settings);
        encoder
    }
}

mod ffi {
    use std::ffi::{c_char, c_float, c_int, c_void};

    #[repr(C)]
    pub struct Config {
        pub width: c_int,
        pub height: c_int,
        pub fps_num: c_int,
        pub fps_den: c_int,
        pub par_num: c_int,
        pub par_den: c_int,
        pub full_range: c_int,
        pub colour_primaries: c_int,
        pub transfer: c_int,
        pub matrix: c_int,
        pub chroma_location: c_int,
        pub preset: *const c_char,
        pub options: *const c_char,
        pub profile: *const c_char,
        pub threads: c_int,
        pub sliced_threads: c_int,
        pub keyint_max: c_int,
        pub bitrate_kbps: c_int,
        pub vbv_ms: c_int,
        pub crf: c_float,
    }

    #[repr(C)]
    pub struct Output {
        pub data: *const u8,
        pub size: c_int,
        pub keyframe: c_int,
        pub pts: i64,
        pub dts: i64,
        pub opaque: i64,
    }

    /// x264's encoder handle, only ever passed back.
    pub type Encoder = c_void;

    unsafe extern "C" {
        pub fn lectern_x264_open(
            config: *const Config,
            error: *mut c_char,
            error_len: usize,
        ) -> *mut Encoder;
        pub fn lectern_x264_profile_level(
            encoder: *mut Encoder,
            profile_idc: *mut c_int,
            level_idc: *mut c_int,
        ) -> c_int;
        pub fn lectern_x264_encode(
            encoder: *mut Encoder,
            planes: *const *const u8,
            strides: *const c_int,
            pts: i64,
            opaque: i64,
            force_idr: c_int,
            out: *mut Output,
        ) -> c_int;
        pub fn lectern_x264_delayed_frames(encoder: *mut Encoder) -> c_int;
        pub fn lectern_x264_maximum_delayed_frames(encoder: *mut Encoder) -> c_int;
        pub fn lectern_x264_close(encoder: *mut Encoder);
    }
}

/// An open libx264 encoder, closed on drop.
struct Encoder(*mut ffi::Encoder);

// SAFETY: an x264 encoder may be used from any thread, one call at a time; the element
// keeps it behind a mutex.
unsafe impl Send for Encoder {}

/// One access unit out of x264, copied out of its buffer (valid only until the next call).
struct AccessUnit {
    data: Vec<u8>,
    keyframe: bool,
    dts: i64,
    frame_number: i64,
}

impl Encoder {
    fn open(settings: &X264Settings, info: &gst_video::VideoInfo) -> Result<Self, String> {
        let text =
            |s: &str| CString::new(s).map_err(|_| format!("x264 setting {s:?} has a NUL byte"));
        let (preset, options, profile) = (
            text(&settings.preset)?,
            text(&settings.options)?,
            text(&settings.profile)?,
        );
        let int = |v: u32| c_int::try_from(v).unwrap_or(c_int::MAX);
        // The colours the picture says it has, so players convert it as the source meant.
        let colours = info.colorimetry();
        let unsaid_if_unknown = |iso: u32| {
            if iso == 2 {
                -1
            } else {
                c_int::try_from(iso).unwrap_or(-1)
            }
        };
        let config = ffi::Config {
            width: int(info.width()),
            height: int(info.height()),
            fps_num: info.fps().numer(),
            fps_den: info.fps().denom(),
            par_num: info.par().numer(),
            par_den: info.par().denom(),
            full_range: (colours.range() == gst_video::VideoColorRange::Range0_255) as c_int,
            colour_primaries: unsaid_if_unknown(colours.primaries().to_iso()),
            transfer: unsaid_if_unknown(colours.transfer().to_iso()),
            matrix: unsaid_if_unknown(colours.matrix().to_iso()),
            chroma_location: chroma_location(info.chroma_site()),
            preset: preset.as_ptr(),
            options: options.as_ptr(),
            profile: profile.as_ptr(),
            threads: int(settings.threads),
            sliced_threads: settings.sliced_threads as c_int,
            keyint_max: int(settings.keyint_max),
            bitrate_kbps: int(settings.bitrate_kbps),
            vbv_ms: int(settings.vbv_ms),
            crf: settings.crf.map_or(-1.0, |q| q as f32),
        };
        let mut error = [0 as c_char; 256];
        // SAFETY: the config and its strings live across the call; the error buffer's
        // length is passed with it.
        let encoder = unsafe { ffi::lectern_x264_open(&config, error.as_mut_ptr(), error.len()) };
        if encoder.is_null() {
            // SAFETY: the shim writes a NUL-terminated message into the buffer on failure.
            return Err(unsafe { std::ffi::CStr::from_ptr(error.as_ptr()) }
                .to_string_lossy()
                .into_owned());
        }
        Ok(Encoder(encoder))
    }

    /// The stream's profile and level, as caps name them.
    fn profile_and_level(&self) -> Option<(&'static str, String)> {
        let (mut profile, mut level) = (0, 0);
        // SAFETY: a live encoder and two out-parameters.
        if unsafe { ffi::lectern_x264_profile_level(self.0, &mut profile, &mut level) } != 0 {
            return None;
        }
        let profile = match profile {
            66 => "constrained-baseline",
            77 => "main",
            100 => "high",
            110 => "high-10",
            122 => "high-4:2:2",
            244 => "high-4:4:4",
            _ => return None,
        };
        let level = if level % 10 == 0 {
            (level / 10).to_string()
        } else {
            format!("{}.{}", level / 10, level % 10)
        };
        Some((profile, level))
    }

    /// Encodes `frame` (None: drains one delayed frame).
    fn encode(
        &mut self,
        frame: Option<(&gst_video::VideoFrameRef<&gst::BufferRef>, i64, i64, bool)>,
    ) -> Result<Option<AccessUnit>, ()> {
        let mut out = ffi::Output {
            data: std::ptr::null(),
            size: 0,
            keyframe: 0,
            pts: 0,
            dts: 0,
            opaque: 0,
        };
        let coded = match frame {
            Some((picture, pts, number, force_idr)) => {
                let mut planes = [std::ptr::null::<u8>(); 3];
                let mut strides = [0 as c_int; 3];
                for plane in 0..3 {
                    planes[plane] = picture.plane_data(plane as u32).map_err(|_| ())?.as_ptr();
                    strides[plane] = picture.plane_stride()[plane];
                }
                // SAFETY: three planes of a mapped I420 frame of the size the encoder was
                // opened with (the sink caps say so); x264 copies them before returning.
                unsafe {
                    ffi::lectern_x264_encode(
                        self.0,
                        planes.as_ptr(),
                        strides.as_ptr(),
                        pts,
                        number,
                        force_idr as c_int,
                        &mut out,
                    )
                }
            }
            // SAFETY: a null picture asks a live encoder for a delayed frame.
            None => unsafe {
                ffi::lectern_x264_encode(
                    self.0,
                    std::ptr::null(),
                    std::ptr::null(),
                    0,
                    0,
                    0,
                    &mut out,
                )
            },
        };
        match coded {
            c if c < 0 => Err(()),
            0 => Ok(None),
            _ => {
                // SAFETY: x264 returned `size` bytes at `data`, valid until its next call.
                let data =
                    unsafe { std::slice::from_raw_parts(out.data, out.size as usize) }.to_vec();
                Ok(Some(AccessUnit {
                    data,
                    keyframe: out.keyframe != 0,
                    dts: out.dts,
                    frame_number: out.opaque,
                }))
            }
        }
    }

    fn delayed_frames(&self) -> i32 {
        // SAFETY: a live encoder.
        unsafe { ffi::lectern_x264_delayed_frames(self.0) }
    }

    fn maximum_delayed_frames(&self) -> i32 {
        // SAFETY: a live encoder.
        unsafe { ffi::lectern_x264_maximum_delayed_frames(self.0) }
    }
}

/// H.264's chroma_sample_loc_type for where 4:2:0 chroma sits; -1 when it has no number.
fn chroma_location(site: gst_video::VideoChromaSite) -> c_int {
    use gst_video::VideoChromaSite as Site;
    if site == Site::MPEG2 {
        0
    } else if site == Site::JPEG {
        1
    } else if site == Site::COSITED {
        2
    } else {
        -1
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: opened by `open`, closed only here.
        unsafe { ffi::lectern_x264_close(self.0) }
    }
}

mod imp {
    use std::sync::{LazyLock, Mutex};

    use super::*;

    /// x264enc's choice: presentation times start 1000 hours in, so that decoding
    /// times, which lead them by the B-frame delay, never go below zero.
    const MIN_PTS: gst::ClockTime = gst::ClockTime::from_seconds(1000 * 3600);

    #[derive(Default)]
    pub struct X264Encoder {
        pub(super) settings: Mutex<Option<X264Settings>>,
        state: Mutex<Option<State>>,
    }

    struct State {
        encoder: Encoder,
        info: gst_video::VideoInfo,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for X264Encoder {
        const NAME: &'static str = "LecternX264Encoder";
        type Type = super::X264Encoder;
        type ParentType = gst_video::VideoEncoder;
    }

    impl ObjectImpl for X264Encoder {}
    impl GstObjectImpl for X264Encoder {}

    impl ElementImpl for X264Encoder {
        fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
            static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
                gst::subclass::ElementMetadata::new(
                    "Lectern x264 encoder",
                    "Codec/Encoder/Video",
                    "H.264 with libx264, releasing each input frame once x264 has copied it",
                    "Lectern",
                )
            });
            Some(&METADATA)
        }

        fn pad_templates() -> &'static [gst::PadTemplate] {
            static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
                let raw = gst_video::VideoCapsBuilder::new()
                    .format(gst_video::VideoFormat::I420)
                    .build();
                let h264 = gst::Caps::builder("video/x-h264")
                    .field("stream-format", "byte-stream")
                    .field("alignment", "au")
                    .build();
                vec![
                    gst::PadTemplate::new(
                        "sink",
                        gst::PadDirection::Sink,
                        gst::PadPresence::Always,
                        &raw,
                    )
                    .expect("sink template"),
                    gst::PadTemplate::new(
                        "src",
                        gst::PadDirection::Src,
                        gst::PadPresence::Always,
                        &h264,
                    )
                    .expect("src template"),
                ]
            });
            TEMPLATES.as_ref()
        }
    }

    impl VideoEncoderImpl for X264Encoder {
        fn start(&self) -> Result<(), gst::ErrorMessage> {
            self.obj().set_min_pts(MIN_PTS);
            Ok(())
        }

        fn stop(&self) -> Result<(), gst::ErrorMessage> {
            *self.state.lock().expect("state lock") = None;
            Ok(())
        }

        fn propose_allocation(
            &self,
            query: &mut gst::query::Allocation,
        ) -> Result<(), gst::LoggableError> {
            // Padded rows are fine: x264 takes each plane's stride.
            query.add_allocation_meta::<gst_video::VideoMeta>(None);
            self.parent_propose_allocation(query)
        }

        fn set_format(
            &self,
            input: &gst_video::VideoCodecState<'static, gst_video::video_codec_state::Readable>,
        ) -> Result<(), gst::LoggableError> {
            // A new format mid-stream: what x264 holds is encoded with the old one first.
            if self.state.lock().expect("state lock").is_some() {
                self.drain().map_err(|_| {
                    gst::loggable_error!(gst::CAT_RUST, "draining x264 for a new format")
                })?;
            }
            let info = input.info().clone();
            let settings = self
                .settings
                .lock()
                .expect("settings lock")
                .clone()
                .ok_or_else(|| gst::loggable_error!(gst::CAT_RUST, "no x264 settings"))?;
            let encoder = Encoder::open(&settings, &info).map_err(|e| {
                gst::element_imp_error!(self, gst::LibraryError::Init, ("{e}"));
                gst::loggable_error!(gst::CAT_RUST, "{e}")
            })?;
            let mut caps = gst::Caps::builder("video/x-h264")
                .field("stream-format", "byte-stream")
                .field("alignment", "au");
            if let Some((profile, level)) = encoder.profile_and_level() {
                caps = caps.field("profile", profile).field("level", level);
            }
            let delayed = encoder.maximum_delayed_frames().max(0) as u64;
            *self.state.lock().expect("state lock") = Some(State { encoder, info });
            let obj = self.obj();
            let output = obj
                .set_output_state(caps.build(), Some(input))
                .map_err(|_| gst::loggable_error!(gst::CAT_RUST, "setting the output caps"))?;
            obj.negotiate(output)
                .map_err(|_| gst::loggable_error!(gst::CAT_RUST, "negotiating the output caps"))?;
            // Frames in flight, as latency (live sources only).
            let frame = gst::ClockTime::SECOND.mul_div_floor(
                input.info().fps().denom().max(1) as u64,
                input.info().fps().numer().max(1) as u64,
            );
            let latency = frame.unwrap_or(gst::ClockTime::ZERO) * delayed;
            obj.set_latency(latency, latency);
            Ok(())
        }

        fn handle_frame(
            &self,
            mut frame: gst_video::VideoCodecFrame,
        ) -> Result<gst::FlowSuccess, gst::FlowError> {
            let coded = {
                let mut guard = self.state.lock().expect("state lock");
                let state = guard.as_mut().ok_or(gst::FlowError::NotNegotiated)?;
                let input = frame.input_buffer().ok_or(gst::FlowError::Error)?;
                let picture =
                    gst_video::VideoFrameRef::from_buffer_ref_readable(input, &state.info)
                        .map_err(|_| {
                            gst::element_imp_error!(
                                self,
                                gst::StreamError::Format,
                                ("the input frame does not fit its caps")
                            );
                            gst::FlowError::Error
                        })?;
                let pts = frame.pts().map_or(0, |t| t.nseconds() as i64);
                let force = frame
                    .flags()
                    .contains(gst_video::VideoCodecFrameFlags::FORCE_KEYFRAME);
                let coded = state.encoder.encode(Some((
                    &picture,
                    pts,
                    frame.system_frame_number() as i64,
                    force,
                )));
                drop(picture);
                coded
            };
            // x264 has its own copy now: keep only the buffer's metadata, so its memory
            // goes back to upstream's pool instead of waiting for this frame's output.
            release_input(&mut frame);
            drop(frame);
            match coded {
                Ok(unit) => self.push(unit),
                Err(()) => {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Encode,
                        ("x264 failed to encode a frame")
                    );
                    Err(gst::FlowError::Error)
                }
            }
        }

        fn finish(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
            self.drain()
        }

        fn flush(&self) -> bool {
            // x264 cannot forget what it holds: start a fresh encoder on the same format.
            let mut guard = self.state.lock().expect("state lock");
            let settings = self.settings.lock().expect("settings lock").clone();
            if let (Some(state), Some(settings)) = (guard.as_mut(), settings) {
                match Encoder::open(&settings, &state.info) {
                    Ok(encoder) => state.encoder = encoder,
                    Err(_) => *guard = None,
                }
            }
            true
        }
    }

    impl X264Encoder {
        /// Encodes what x264 still holds and pushes it.
        fn drain(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
            loop {
                let unit = {
                    let mut guard = self.state.lock().expect("state lock");
                    let Some(state) = guard.as_mut() else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    if state.encoder.delayed_frames() <= 0 {
                        return Ok(gst::FlowSuccess::Ok);
                    }
                    state.encoder.encode(None).map_err(|()| {
                        gst::element_imp_error!(
                            self,
                            gst::StreamError::Encode,
                            ("x264 failed to drain")
                        );
                        gst::FlowError::Error
                    })?
                };
                self.push(unit)?;
            }
        }

        /// Finishes the frame an access unit belongs to with it.
        fn push(&self, unit: Option<AccessUnit>) -> Result<gst::FlowSuccess, gst::FlowError> {
            let Some(unit) = unit else {
                return Ok(gst::FlowSuccess::Ok);
            };
            let obj = self.obj();
            let Some(mut frame) = i32::try_from(unit.frame_number)
                .ok()
                .and_then(|n| obj.frame(n))
            else {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Encode,
                    ("x264 returned a frame it was never given")
                );
                return Err(gst::FlowError::Error);
            };
            frame.set_dts(
                u64::try_from(unit.dts)
                    .ok()
                    .map(gst::ClockTime::from_nseconds),
            );
            if unit.keyframe {
                frame.set_flags(gst_video::VideoCodecFrameFlags::SYNC_POINT);
            }
            frame.set_output_buffer(gst::Buffer::from_mut_slice(unit.data));
            obj.finish_frame(frame)
        }
    }

    /// Replaces a frame's input buffer with one that has its metadata and no memory.
    fn release_input(frame: &mut gst_video::VideoCodecFrame) {
        let Some(input) = frame.input_buffer() else {
            return;
        };
        let flags = gst::BufferCopyFlags::FLAGS
            | gst::BufferCopyFlags::TIMESTAMPS
            | gst::BufferCopyFlags::META;
        let Ok(metadata) = input.copy_region(flags, ..) else {
            return;
        };
        let raw: *mut gst_video::ffi::GstVideoCodecFrame = frame.to_glib_none().0;
        // SAFETY: we hold the encoder's stream lock (the frame handle takes it), which
        // guards the frame's fields; the old buffer is unreffed once, as its owner
        // field is overwritten with a new reference.
        unsafe {
            let old = std::mem::replace(&mut (*raw).input_buffer, metadata.into_glib_ptr());
            if !old.is_null() {
                gst::ffi::gst_mini_object_unref(old.cast());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gstreamer_app as gst_app;

    fn settings(crf: Option<u32>) -> X264Settings {
        gst::init().unwrap();
        X264Settings {
            preset: "veryfast".into(),
            options: lectern_common::messages::X264_OPTIONS.into(),
            profile: "high".into(),
            threads: 1,
            sliced_threads: false,
            keyint_max: 30,
            bitrate_kbps: 800,
            vbv_ms: 2000,
            crf,
        }
    }

    /// Encodes `frames` frames of a moving test pattern: the access units and their
    /// caps, or the pipeline's error.
    fn try_encode(
        settings: X264Settings,
        frames: u32,
    ) -> Result<(Vec<gst::Buffer>, gst::Caps), String> {
        run(X264Encoder::new(settings).upcast(), "ball", frames)
    }

    /// Test pictures through `enc` into an appsink.
    fn run(
        enc: gst::Element,
        pattern: &str,
        frames: u32,
    ) -> Result<(Vec<gst::Buffer>, gst::Caps), String> {
        gst::init().unwrap();
        let pipeline = gst::Pipeline::new();
        let src = gst::ElementFactory::make("videotestsrc")
            .property("num-buffers", frames as i32)
            .property_from_str("pattern", pattern)
            .build()
            .unwrap();
        let caps = gst::ElementFactory::make("capsfilter")
            .property(
                "caps",
                gst_video::VideoCapsBuilder::new()
                    .format(gst_video::VideoFormat::I420)
                    .width(320)
                    .height(180)
                    .framerate(gst::Fraction::new(30, 1))
                    .build(),
            )
            .build()
            .unwrap();
        let units = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let collected = units.clone();
        let sink = gst_app::AppSink::builder()
            .sync(false)
            .callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |sink| {
                        let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        collected
                            .lock()
                            .unwrap()
                            .push(sample.buffer_owned().unwrap());
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            )
            .build();
        // What the pipeline asks of both encoders.
        let h264 = gst::ElementFactory::make("capsfilter")
            .property(
                "caps",
                gst::Caps::builder("video/x-h264")
                    .field("stream-format", "byte-stream")
                    .field("alignment", "au")
                    .field("profile", "high")
                    .build(),
            )
            .build()
            .unwrap();
        pipeline
            .add_many([&src, &caps, &enc, &h264, sink.upcast_ref()])
            .unwrap();
        gst::Element::link_many([&src, &caps, &enc, &h264, sink.upcast_ref()]).unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let bus = pipeline.bus().unwrap();
        let end = bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        let caps = sink.static_pad("sink").unwrap().current_caps();
        pipeline.set_state(gst::State::Null).unwrap();
        match end.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Eos(_)) => {
                Ok((std::mem::take(&mut *units.lock().unwrap()), caps.unwrap()))
            }
            Some(gst::MessageView::Error(e)) => Err(format!("{} ({:?})", e.error(), e.debug())),
            _ => Err("no end within a minute".into()),
        }
    }

    fn encode(settings: X264Settings, frames: u32) -> (Vec<gst::Buffer>, gst::Caps) {
        try_encode(settings, frames).unwrap()
    }

    #[test]
    fn every_frame_comes_out_once_with_keyframes_on_the_grid_and_dts_before_pts() {
        let (units, caps) = encode(settings(None), 95);
        assert_eq!(
            units.len(),
            95,
            "one access unit a frame, delayed ones drained at the end"
        );
        let s = caps.structure(0).unwrap();
        assert_eq!(s.get::<&str>("stream-format").unwrap(), "byte-stream");
        assert_eq!(s.get::<&str>("profile").unwrap(), "high");
        let keyframes: Vec<usize> = units
            .iter()
            .enumerate()
            .filter(|(_, b)| !b.flags().contains(gst::BufferFlags::DELTA_UNIT))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            keyframes,
            vec![0, 30, 60, 90],
            "keyint 30, no scene cuts, in decoding order"
        );
        let mut pts: Vec<u64> = units.iter().map(|b| b.pts().unwrap().nseconds()).collect();
        for b in &units {
            assert!(
                b.dts().unwrap() <= b.pts().unwrap(),
                "a frame decoded after it is shown"
            );
            let data = b.map_readable().unwrap();
            assert_eq!(&data[..4], &[0, 0, 0, 1], "Annex B start code");
        }
        let dts: Vec<u64> = units.iter().map(|b| b.dts().unwrap().nseconds()).collect();
        assert!(dts.windows(2).all(|w| w[0] < w[1]), "decoding times rise");
        pts.sort_unstable();
        pts.dedup();
        assert_eq!(pts.len(), 95, "every picture shown once");
    }

    /// gst-plugins-ugly's x264enc with the same settings, as the pipeline set it up
    /// before this element.
    fn x264enc(s: &X264Settings) -> gst::Element {
        let enc = gst::ElementFactory::make("x264enc").build().unwrap();
        enc.set_property("bitrate", s.bitrate_kbps);
        if let Some(crf) = s.crf {
            enc.set_property_from_str("pass", "qual");
            enc.set_property("quantizer", crf);
        }
        enc.set_property("key-int-max", s.keyint_max);
        enc.set_property_from_str("speed-preset", &s.preset);
        enc.set_property("vbv-buf-capacity", s.vbv_ms);
        enc.set_property("threads", s.threads);
        enc.set_property("sliced-threads", s.sliced_threads);
        enc.set_property("option-string", &s.options);
        enc
    }

    /// The same settings must make the same stream as x264enc, byte for byte: x264 is
    /// deterministic on one thread, and its SEI spells out every option it ran with.
    #[test]
    fn the_stream_is_x264enc_s_byte_for_byte_at_an_average_rate_and_at_constant_quality() {
        for (crf, pattern) in [(None, "snow"), (None, "ball"), (Some(23), "smpte")] {
            let mut s = settings(crf);
            s.bitrate_kbps = 300;
            let ours = run(X264Encoder::new(s.clone()).upcast(), pattern, 70)
                .unwrap()
                .0;
            let theirs = run(x264enc(&s), pattern, 70).unwrap().0;
            let options = |b: &gst::Buffer| {
                let data = b.map_readable().unwrap().to_vec();
                let text = String::from_utf8_lossy(&data).into_owned();
                text.split_once("options: ")
                    .map(|(_, o)| o.split('\0').next().unwrap_or("").to_string())
                    .unwrap_or_default()
            };
            assert_eq!(
                options(&ours[0]),
                options(&theirs[0]),
                "{pattern}: x264's own account of its settings"
            );
            assert_eq!(ours.len(), theirs.len());
            for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                let (x, y) = (
                    a.map_readable().unwrap().to_vec(),
                    b.map_readable().unwrap().to_vec(),
                );
                let at = x.iter().zip(&y).position(|(p, q)| p != q);
                assert!(
                    x == y,
                    "{pattern}: access unit {i} differs: sizes {} {}, first at {at:?}: {:02x?} vs {:02x?}",
                    x.len(),
                    y.len(),
                    &x[at.unwrap_or(0).saturating_sub(8)..][..24.min(x.len())],
                    &y[at.unwrap_or(0).saturating_sub(8)..][..24.min(y.len())]
                );
                assert_eq!(
                    (a.pts(), a.dts(), a.flags()),
                    (b.pts(), b.dts(), b.flags()),
                    "{pattern}: access unit {i}'s timing or flags"
                );
            }
        }
    }

    #[test]
    fn the_average_rate_follows_the_settings() {
        let bytes = |kbps| {
            let mut s = settings(None);
            s.bitrate_kbps = kbps;
            run(X264Encoder::new(s).upcast(), "snow", 90)
                .unwrap()
                .0
                .iter()
                .map(|b| b.size())
                .sum::<usize>()
        };
        let (low, high) = (bytes(150), bytes(1500));
        assert!(
            high > low * 4,
            "1500 kbit/s gave {high} bytes, 150 gave {low}"
        );
    }

    /// Every rung's encoder opens on its own streaming thread, at about the same time:
    /// reading the options must not share state between them.
    #[test]
    fn encoders_opened_on_many_threads_at_once_all_open() {
        let s = settings(None);
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, 64, 64)
            .fps(gst::Fraction::new(30, 1))
            .build()
            .unwrap();
        let failures: usize = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        (0..400)
                            .filter(|_| Encoder::open(&s, &info).is_err())
                            .count()
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).sum()
        });
        assert_eq!(
            failures, 0,
            "{failures} of 3200 encoders refused their settings"
        );
    }

    #[test]
    fn settings_x264_refuses_fail_the_pipeline_with_its_reason() {
        let mut bad = settings(None);
        bad.options = "no-such-option=1".into();
        let error = try_encode(bad, 5).unwrap_err();
        // In the message itself, which is what a failed job reports.
        let message = error.split(" (").next().unwrap();
        assert!(message.contains("no-such-option"), "{error}");
    }
}

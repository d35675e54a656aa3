//! `AdtsPacker`: a GStreamer element that hands AAC to the MPEG-TS muxer in groups of
//! ADTS frames. mpegtsmux writes one PES packet per buffer, and an AAC frame is 21 ms of
//! sound in a few hundred bytes: a PES header and a part-filled last TS packet for
//! every frame cost a 128 kbit/s rendition a quarter of its size. ffmpeg's muxer puts up
//! to 2930 bytes of frames in a PES; so does this. Players read every ADTS frame of a
//! PES (hls.js, Safari, ffmpeg), timing each from the PES's timestamp and the frames
//! before it, so a group only ever holds frames that follow one another without a gap.
//! Built into the binary, like `RungScaler`: the pipeline makes it with `AdtsPacker::new`.

use gstreamer as gst;
use gstreamer::glib;

glib::wrapper! {
    pub struct AdtsPacker(ObjectSubclass<imp::AdtsPacker>) @extends gst::Element, gst::Object;
}

impl AdtsPacker {
    pub fn new() -> Self {
        glib::Object::new()
    }
}

impl Default for AdtsPacker {
    fn default() -> Self {
        Self::new()
    }
}

/// ffmpeg's mpegts muxer's PES payload for audio.
const MAX_GROUP_BYTES: usize = 2930;
/// Low bit rates fill 2930 bytes slowly (0.37 s at 64 kbit/s): a group holds at most
/// this much sound, so segments are still cut within a few frames of 6 s.
const MAX_GROUP_NS: u64 = 200_000_000;
/// Frames further apart than their durations by more than this start a new group.
const GAP_TOLERANCE_NS: u64 = 1_000_000;

/// The sound in one ADTS frame, from its header: 1024 samples per raw data block at
/// the header's sampling rate.
fn adts_duration_ns(frame: &[u8]) -> Option<u64> {
    const RATES: [u64; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    if frame.len() < 7 || frame[0] != 0xff || frame[1] & 0xf0 != 0xf0 {
        return None;
    }
    let rate = *RATES.get(((frame[2] >> 2) & 0x0f) as usize)?;
    let blocks = (frame[6] & 0x03) as u64 + 1;
    Some(blocks * 1024 * 1_000_000_000 / rate)
}

mod imp {
    use std::sync::{LazyLock, Mutex};

    use gstreamer as gst;
    use gstreamer::glib;
    use gstreamer::prelude::*;
    use gstreamer::subclass::prelude::*;

    use super::{GAP_TOLERANCE_NS, MAX_GROUP_BYTES, MAX_GROUP_NS, adts_duration_ns};

    /// The frames waiting to go out as one buffer.
    #[derive(Default)]
    struct Group {
        frames: Vec<gst::Buffer>,
        bytes: usize,
    }

    impl Group {
        /// Whether `next` can join: room left, no gap, no discontinuity, and the
        /// group's sound not yet at its limit.
        fn takes(&self, next: &gst::Buffer) -> bool {
            let (Some(first), Some(last)) = (self.frames.first(), self.frames.last()) else {
                return true;
            };
            if self.bytes + next.size() > MAX_GROUP_BYTES
                || next.flags().contains(gst::BufferFlags::DISCONT)
            {
                return false;
            }
            let (Some(first_pts), Some(last_end), Some(next_pts)) = (
                first.pts(),
                last.pts().zip(last.duration()).map(|(p, d)| p + d),
                next.pts(),
            ) else {
                return false;
            };
            next_pts.nseconds().abs_diff(last_end.nseconds()) <= GAP_TOLERANCE_NS
                && next_pts.nseconds().saturating_sub(first_pts.nseconds()) < MAX_GROUP_NS
        }

        fn push(&mut self, frame: gst::Buffer) {
            self.bytes += frame.size();
            self.frames.push(frame);
        }

        /// The group as one buffer: the first frame's timestamps and flags, every
        /// frame's memory (no copy), the frames' durations summed.
        fn take(&mut self) -> Option<gst::Buffer> {
            self.bytes = 0;
            let mut frames = std::mem::take(&mut self.frames).into_iter();
            let mut merged = frames.next()?;
            let mut duration = merged.duration();
            for frame in frames {
                duration = duration.zip(frame.duration()).map(|(a, b)| a + b);
                merged.append(frame);
            }
            merged.make_mut().set_duration(duration);
            Some(merged)
        }
    }

    pub struct AdtsPacker {
        sinkpad: gst::Pad,
        srcpad: gst::Pad,
        group: Mutex<Group>,
    }

    impl AdtsPacker {
        fn chain(&self, mut frame: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
            // aacparse leaves durations unset; the frame's header tells it.
            if frame.duration().is_none() {
                let duration = frame
                    .map_readable()
                    .ok()
                    .and_then(|map| adts_duration_ns(&map));
                frame
                    .make_mut()
                    .set_duration(duration.map(gst::ClockTime::from_nseconds));
            }
            let full = {
                let mut group = self.group.lock().expect("group lock");
                let full = if group.takes(&frame) {
                    None
                } else {
                    group.take()
                };
                group.push(frame);
                full
            };
            match full {
                Some(buffer) => self.srcpad.push(buffer),
                None => Ok(gst::FlowSuccess::Ok),
            }
        }

        fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
            if let gst::EventView::FlushStop(_) = event.view() {
                self.group.lock().expect("group lock").take();
            } else if event.is_serialized() {
                // Events are ordered with data: what came before goes out first (EOS
                // included, or the last frames would be lost).
                let pending = self.group.lock().expect("group lock").take();
                if let Some(buffer) = pending {
                    let _ = self.srcpad.push(buffer);
                }
            }
            gst::Pad::event_default(pad, Some(&*self.obj()), event)
        }
    }

    #[glib::object_subclass]
    impl ObjectSubclass for AdtsPacker {
        const NAME: &'static str = "LecternAdtsPacker";
        type Type = super::AdtsPacker;
        type ParentType = gst::Element;

        fn with_class(klass: &Self::Class) -> Self {
            let sinkpad = gst::Pad::builder_from_template(
                &klass.pad_template("sink").expect("sink template"),
            )
            .chain_function(|_, parent, buffer| {
                AdtsPacker::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |this| this.chain(buffer),
                )
            })
            .event_function(|pad, parent, event| {
                AdtsPacker::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.sink_event(pad, event),
                )
            })
            .flags(gst::PadFlags::PROXY_CAPS)
            .build();
            let srcpad =
                gst::Pad::builder_from_template(&klass.pad_template("src").expect("src template"))
                    .flags(gst::PadFlags::PROXY_CAPS)
                    .build();
            Self {
                sinkpad,
                srcpad,
                group: Mutex::new(Group::default()),
            }
        }
    }

    impl ObjectImpl for AdtsPacker {
        fn constructed(&self) {
            self.parent_constructed();
            let obj = self.obj();
            obj.add_pad(&self.sinkpad).expect("sink pad added");
            obj.add_pad(&self.srcpad).expect("src pad added");
        }
    }

    impl GstObjectImpl for AdtsPacker {}

    impl ElementImpl for AdtsPacker {
        fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
            static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
                gst::subclass::ElementMetadata::new(
                    "Lectern ADTS packer",
                    "Codec/Parser/Audio",
                    "Groups consecutive ADTS AAC frames into buffers of up to 2930 bytes",
                    "Lectern",
                )
            });
            Some(&*METADATA)
        }

        fn pad_templates() -> &'static [gst::PadTemplate] {
            static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
                let caps = gst::Caps::builder("audio/mpeg")
                    .field("mpegversion", 4i32)
                    .field("stream-format", "adts")
                    .build();
                [
                    ("src", gst::PadDirection::Src),
                    ("sink", gst::PadDirection::Sink),
                ]
                .into_iter()
                .map(|(name, direction)| {
                    gst::PadTemplate::new(name, direction, gst::PadPresence::Always, &caps)
                        .expect("pad template")
                })
                .collect()
            });
            TEMPLATES.as_ref()
        }

        fn change_state(
            &self,
            transition: gst::StateChange,
        ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
            let result = self.parent_change_state(transition);
            if transition == gst::StateChange::PausedToReady {
                self.group.lock().expect("group lock").take();
            }
            result
        }
    }
}

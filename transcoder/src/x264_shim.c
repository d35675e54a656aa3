/* The few calls `x264.rs` makes into libx264, behind plain C types: x264's own
 * structs (x264_param_t, x264_picture_t) change layout between its builds, so only
 * code compiled against the installed <x264.h> touches them. */

#define _POSIX_C_SOURCE 200809L /* strtok_r under -std=c11 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <x264.h>

typedef struct {
    int width, height;
    int fps_num, fps_den;
    int par_num, par_den;
    /* the picture's colours as H.264's VUI numbers them; below zero: unsaid */
    int full_range, colour_primaries, transfer, matrix, chroma_location;
    const char *preset;
    /* key=value pairs split by ':', applied after the preset */
    const char *options;
    const char *profile;
    int threads, sliced_threads, keyint_max;
    int bitrate_kbps, vbv_ms;
    /* constant quality with bitrate_kbps as its ceiling; below zero: average bit rate */
    float crf;
} lectern_x264_config;

typedef struct {
    const uint8_t *data;
    int size;
    int keyframe;
    int64_t pts, dts, opaque;
} lectern_x264_output;

static int apply_options(x264_param_t *p, const char *options, char *error, size_t error_len) {
    char copy[1024];
    if (strlen(options) >= sizeof copy) {
        snprintf(error, error_len, "x264 options too long");
        return -1;
    }
    strcpy(copy, options);
    /* strtok_r: every rung's encoder opens on its own streaming thread, at once */
    char *rest = NULL;
    for (char *pair = strtok_r(copy, ":", &rest); pair; pair = strtok_r(NULL, ":", &rest)) {
        char *value = strchr(pair, '=');
        if (value)
            *value++ = '\0';
        if (x264_param_parse(p, pair, value) != 0) {
            snprintf(error, error_len, "x264 refused the option %s=%s", pair, value ? value : "");
            return -1;
        }
    }
    return 0;
}

/* The settings gst-plugins-ugly's x264enc makes from the same properties, in its
 * order: preset, access unit delimiters, nanosecond timebase, the option string,
 * threads and keyint, the picture and its colours, the rate control, the profile. */
x264_t *lectern_x264_open(const lectern_x264_config *c, char *error, size_t error_len) {
    x264_param_t p;
    char user[160];
    if (x264_param_default_preset(&p, c->preset, NULL) < 0) {
        snprintf(error, error_len, "x264 has no preset %s", c->preset);
        return NULL;
    }
    p.i_log_level = X264_LOG_ERROR;
    p.b_aud = 1;
    p.b_annexb = 1;
    p.i_timebase_num = 1;
    p.i_timebase_den = 1000000000;
    snprintf(user, sizeof user, "keyint=%d:threads=%d:sliced-threads=%d", c->keyint_max, c->threads, c->sliced_threads);
    if (apply_options(&p, c->options, error, error_len) < 0 || apply_options(&p, user, error, error_len) < 0)
        return NULL;
    p.i_csp = X264_CSP_I420;
    p.i_width = c->width;
    p.i_height = c->height;
    if (c->fps_num > 0 && c->fps_den > 0) {
        /* a constant rate: x264 times frames by it, not by their timestamps */
        p.b_vfr_input = 0;
        p.i_fps_num = c->fps_num;
        p.i_fps_den = c->fps_den;
    }
    if (c->par_num > 0 && c->par_den > 0) {
        p.vui.i_sar_width = c->par_num;
        p.vui.i_sar_height = c->par_den;
    }
    p.vui.b_fullrange = c->full_range > 0;
    if (c->colour_primaries >= 0)
        p.vui.i_colorprim = c->colour_primaries;
    if (c->transfer >= 0)
        p.vui.i_transfer = c->transfer;
    if (c->matrix >= 0)
        p.vui.i_colmatrix = c->matrix;
    if (c->chroma_location >= 0)
        p.vui.i_chroma_loc = c->chroma_location;
    p.analyse.b_psnr = 0;
    if (c->crf >= 0) {
        p.rc.i_rc_method = X264_RC_CRF;
        p.rc.f_rf_constant = c->crf;
    } else {
        p.rc.i_rc_method = X264_RC_ABR;
        p.rc.i_bitrate = c->bitrate_kbps;
    }
    p.rc.i_vbv_max_bitrate = c->bitrate_kbps;
    p.rc.i_vbv_buffer_size = c->bitrate_kbps * c->vbv_ms / 1000;
    p.rc.b_stat_read = 0;
    p.rc.b_stat_write = 0;
    if (x264_param_apply_profile(&p, c->profile) < 0) {
        snprintf(error, error_len, "x264 cannot encode profile %s with these settings", c->profile);
        return NULL;
    }
    x264_t *encoder = x264_encoder_open(&p);
    if (!encoder)
        snprintf(error, error_len, "x264 refused %dx%d with these settings", c->width, c->height);
    return encoder;
}

/* The SPS's profile_idc and level_idc, for the output caps. */
int lectern_x264_profile_level(x264_t *encoder, int *profile_idc, int *level_idc) {
    x264_nal_t *nal;
    int n;
    if (x264_encoder_headers(encoder, &nal, &n) < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        /* start code (4 bytes), NAL header, then profile_idc, constraints, level_idc */
        if (nal[i].i_type == NAL_SPS && nal[i].i_payload >= 8) {
            *profile_idc = nal[i].p_payload[5];
            *level_idc = nal[i].p_payload[7];
            return 0;
        }
    }
    return -1;
}

/* Encodes one I420 picture (planes NULL: drains one delayed frame). x264 copies the
 * picture before it returns, so the caller may free it at once. Returns 1 with an
 * access unit in `out` (valid until the next call), 0 with none, below 0 on error. */
int lectern_x264_encode(x264_t *encoder, const uint8_t *const planes[3], const int strides[3], int64_t pts,
                        int64_t opaque, int force_idr, lectern_x264_output *out) {
    x264_picture_t in, coded;
    x264_nal_t *nal;
    int n = 0;
    x264_picture_init(&in);
    if (planes) {
        in.img.i_csp = X264_CSP_I420;
        in.img.i_plane = 3;
        for (int i = 0; i < 3; i++) {
            in.img.plane[i] = (uint8_t *)planes[i];
            in.img.i_stride[i] = strides[i];
        }
        in.i_type = force_idr ? X264_TYPE_IDR : X264_TYPE_AUTO;
        in.i_pts = pts;
        in.opaque = (void *)(intptr_t)opaque;
    }
    int size = x264_encoder_encode(encoder, &nal, &n, planes ? &in : NULL, &coded);
    if (size < 0)
        return -1;
    if (size == 0 || n == 0)
        return 0;
    /* x264 lays one call's NAL units out back to back */
    out->data = nal[0].p_payload;
    out->size = size;
    out->keyframe = coded.b_keyframe;
    out->pts = coded.i_pts;
    out->dts = coded.i_dts;
    out->opaque = (int64_t)(intptr_t)coded.opaque;
    return 1;
}

int lectern_x264_delayed_frames(x264_t *encoder) { return x264_encoder_delayed_frames(encoder); }

int lectern_x264_maximum_delayed_frames(x264_t *encoder) { return x264_encoder_maximum_delayed_frames(encoder); }

void lectern_x264_close(x264_t *encoder) { x264_encoder_close(encoder); }

//! Compiles `src/x264_shim.c` against the installed libx264 (Debian: libx264-dev).

fn main() {
    println!("cargo:rerun-if-changed=src/x264_shim.c");
    let x264 = pkg_config::Config::new()
        .atleast_version("0.155")
        .probe("x264")
        .unwrap_or_else(|e| {
            panic!("libx264 and its headers are needed (apt install libx264-dev): {e}")
        });
    let mut shim = cc::Build::new();
    shim.file("src/x264_shim.c")
        .warnings(true)
        .flag_if_supported("-std=c11");
    for dir in &x264.include_paths {
        shim.include(dir);
    }
    shim.compile("lectern_x264_shim");
}

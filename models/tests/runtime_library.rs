//! `ORT_DYLIB_PATH` problems give errors that name the variable and the fix.
//! One test per process: the runtime library is loaded once per process.

use vidar_models::{environment, ModelError};

#[test]
fn runtime_library_errors_name_the_variable_and_setup() {
    std::env::remove_var("ORT_DYLIB_PATH");
    let err = environment().expect_err("unset");
    assert!(matches!(err, ModelError::RuntimeLibraryUnset), "{err}");
    assert!(
        err.to_string().contains("ORT_DYLIB_PATH") && err.to_string().contains("deploy/setup.sh")
    );

    std::env::set_var("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so");
    let err = environment().expect_err("missing");
    assert!(
        matches!(err, ModelError::RuntimeLibraryMissing { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("/nonexistent/libonnxruntime.so"),
        "{err}"
    );

    // A file that is not a shared library.
    std::env::set_var(
        "ORT_DYLIB_PATH",
        concat!(env!("CARGO_MANIFEST_DIR"), "/manifest.toml"),
    );
    let err = environment().expect_err("not a library");
    assert!(
        matches!(err, ModelError::RuntimeLibraryLoad { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("deploy/setup.sh"), "{err}");
}

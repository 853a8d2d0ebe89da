use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use std::time::Instant;
fn main() {
    let mut r = Resizer::new();
    println!("{:?}", r.cpu_extensions());
    let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    for (pt, w, h, ch, ow) in [(PixelType::U8, 1280u32, 720u32, 1usize, 300u32), (PixelType::U8, 640, 360, 1, 300), (PixelType::U8, 640, 360, 1, 150), (PixelType::U8x2, 640, 360, 2, 150), (PixelType::U8x3, 1280, 720, 3, 300), (PixelType::U8, 1920, 1080, 1, 300), (PixelType::U8, 960, 540, 1, 150)] {
        let data: Vec<u8> = (0..(w as usize * h as usize * ch)).map(|i| (i * 31 % 251) as u8).collect();
        let src = ImageRef::new(w, h, &data, pt).unwrap();
        let mut dst = Image::new(ow, ow, pt);
        for _ in 0..20 { r.resize(&src, &mut dst, &opts).unwrap(); }
        let t = Instant::now();
        for _ in 0..200 { r.resize(&src, &mut dst, &opts).unwrap(); }
        println!("{pt:?} {w}x{h} -> {ow}: {:.1} us", t.elapsed().as_secs_f64() / 200.0 * 1e6);
    }
}

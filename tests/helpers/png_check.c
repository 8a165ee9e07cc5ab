/*
 * png_check FILE WIDTH HEIGHT [MIN_FRACTION]: reads a PNG back with cairo and
 * checks that it is WIDTH x HEIGHT (0: any) and not blank: at least
 * MIN_FRACTION (default 0.01) of its pixels differ from the top-left pixel
 * (the background). Prints "W H FRACTION"; exit 0 ok, 1 failed check, 2 usage.
 */
#include "common/util.h"

#include <cairo.h>

#include "common/banned.h"

int main(int argc, char **argv)
{
	cairo_surface_t *s;
	int64_t w, h;
	double minf = 0.01;
	int sw, sh, stride;
	size_t diff = 0;
	unsigned char *data;
	uint32_t bg;

	kv_set_progname("png_check");
	if (argc < 4 || kv_parse_i64(argv[2], 0, 100000, &w) < 0 ||
	    kv_parse_i64(argv[3], 0, 100000, &h) < 0 ||
	    (argc > 4 && kv_parse_double(argv[4], &minf) < 0)) {
		kv_error("usage: png_check FILE WIDTH HEIGHT [MIN_FRACTION]");
		return 2;
	}
	s = cairo_image_surface_create_from_png(argv[1]);
	if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
		kv_error("%s: %s", argv[1], cairo_status_to_string(cairo_surface_status(s)));
		cairo_surface_destroy(s);
		return 1;
	}
	sw = cairo_image_surface_get_width(s);
	sh = cairo_image_surface_get_height(s);
	stride = cairo_image_surface_get_stride(s);
	data = cairo_image_surface_get_data(s);
	memcpy(&bg, data, 4);
	for (int y = 0; y < sh; y++)
		for (int x = 0; x < sw; x++) {
			uint32_t px;
			memcpy(&px, data + (size_t)y * (size_t)stride + (size_t)x * 4, 4);
			diff += (px & 0xffffff) != (bg & 0xffffff);
		}
	cairo_surface_destroy(s);
	printf("%d %d %.4f\n", sw, sh, (double)diff / ((double)sw * sh));
	if ((w && sw != w) || (h && sh != h)) {
		kv_error("%s: %dx%d, expected %lldx%lld", argv[1], sw, sh, (long long)w, (long long)h);
		return 1;
	}
	if ((double)diff / ((double)sw * sh) < minf) {
		kv_error("%s: blank (%.4f of the pixels differ from the background)", argv[1],
			 (double)diff / ((double)sw * sh));
		return 1;
	}
	return 0;
}

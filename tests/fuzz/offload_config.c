/* Fuzzes the LMCache-style YAML config parser of the offload connector. */
#include "common/util.h"

#include <unistd.h>

#include "offload/offload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	struct kvo_config c;
	if (!path[0]) {
		snprintf(path, sizeof(path), "/tmp/kvo-fuzz-%ld.yaml", (long)getpid());
		kv_set_quiet(true);
	}
	FILE *f = fopen(path, "wb");
	if (!f)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	kvo_config_init(&c);
	kvo_config_load_file(&c, path);
	kvo_config_release(&c);
	return 0;
}

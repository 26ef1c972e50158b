package faiss

/*
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include "shim.h"

// Declared here rather than taken from cblas.h, which may be netlib's: these
// are OpenBLAS's own extensions (see shim.cpp).
extern char *openblas_get_config(void);
extern char *openblas_get_corename(void);
extern int openblas_get_num_threads(void);

// dvq_openblas_path names the shared object openblas_get_config lives in, or
// returns NULL when the loader cannot tell (a static link).
static const char *dvq_openblas_path(void) {
	Dl_info info;
	if (dladdr((void *)openblas_get_config, &info) == 0) {
		return NULL;
	}
	return info.dli_fname;
}
*/
import "C"

import (
	"fmt"
	"path/filepath"
	"strings"
)

// OpenBLAS describes the OpenBLAS linked into this build. The core cannot
// change after start-up: OpenBLAS picks it once, when the process loads it.
func OpenBLAS() BLASInfo {
	info := BLASInfo{
		Library: "OpenBLAS",
		Config:  strings.TrimSpace(C.GoString(C.openblas_get_config())),
		Core:    strings.TrimSpace(C.GoString(C.openblas_get_corename())),
		Threads: int(C.openblas_get_num_threads()),
	}
	fields := strings.Fields(info.Config)
	if len(fields) >= 2 && fields[0] == "OpenBLAS" {
		info.Version = fields[1]
	}
	for _, f := range fields {
		if f == "DYNAMIC_ARCH" {
			info.DynamicArch = true
		}
	}
	if p := C.dvq_openblas_path(); p != nil {
		info.Path = C.GoString(p)
		if r, err := filepath.EvalSymlinks(info.Path); err == nil {
			info.Path = r
		}
	}
	return info
}

// FAISSInfo describes the FAISS this build links.
type FAISSInfo struct {
	// Version is FAISS's major.minor.patch, from the headers it was built
	// with.
	Version string `json:"version,omitempty"`
	// CompileOptions is faiss::get_compile_options(): the SIMD level its
	// own distance code was compiled for ("GENERIC", "AVX2"...).
	CompileOptions string `json:"compile_options,omitempty"`
}

// FAISS describes the FAISS library linked into this build.
func FAISS() FAISSInfo {
	var opts [256]C.char
	var major, minor, patch C.int32_t
	C.dvq_faiss_version(&major, &minor, &patch, &opts[0], C.int32_t(len(opts)))
	return FAISSInfo{
		Version:        fmt.Sprintf("%d.%d.%d", major, minor, patch),
		CompileOptions: strings.TrimSpace(C.GoString(&opts[0])),
	}
}

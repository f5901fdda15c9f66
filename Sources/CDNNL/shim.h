#ifndef CDNNL_SHIM_H
#define CDNNL_SHIM_H

/* oneDNN's C API (Debian's libdnnl-dev installs it under /usr/include/oneapi/dnnl; it ships no
   pkg-config file, so the module map links `dnnl` by name). */
#include <oneapi/dnnl/dnnl.h>

#endif

/* Architecture-neutral stand-in so that the BPF target finds <asm/posix_types.h>
 * without a host multiarch include directory. */
#include <asm-generic/posix_types.h>

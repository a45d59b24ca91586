/* Architecture-neutral stand-in so that the BPF target finds <asm/types.h>
 * without a host multiarch include directory. */
#include <asm-generic/types.h>

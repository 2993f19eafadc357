/* The shared library's own translation unit: everything else comes from the static layers
 * (linked whole); only UP_API symbols are exported. */
#include "underpass/underpass.h"

UP_API int up_abi_version(void)
{
    return UNDERPASS_VERSION_MAJOR;
}

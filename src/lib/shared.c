/* libunderpass.so is the static layers linked whole (CMakeLists.txt); a shared library target
 * needs a translation unit of its own, and this is it. Only UP_API symbols are exported. */
typedef int up_lib_shared_unit;

# Link dependencies of the libstem libraries.
#
# The library code is compiled once (stem_objects) and linked twice: into the
# shared `stem` and the static `stem_static`. The shared library hides its
# dependencies. The static one cannot: its consumers link them, so they appear
# in the exported stem::stem_static target and in stem.pc's Libs.private.
# Imported targets such as OpenMP::OpenMP_C or Threads::Threads are flattened
# to plain libraries there, so a consumer needs no find_package() of its own
# (and no C compiler setup for FindOpenMP) to link the static library.

# Plain libraries/flags an imported dependency stands for.
function(_stem_flatten_dep item out_var)
  if(item STREQUAL "OpenMP::OpenMP_C")
    set(flat ${OpenMP_C_LIBRARIES})
  elseif(item STREQUAL "Threads::Threads")
    set(flat ${CMAKE_THREAD_LIBS_INIT}) # empty where libc has pthreads
  elseif(TARGET "${item}")
    message(WARNING "libstem: link dependency '${item}' is a target that stem_static cannot "
                    "export; consumers of the static library must link it themselves")
    set(flat "")
  else()
    set(flat "${item}")
  endif()
  set(${out_var} "${flat}" PARENT_SCOPE)
endfunction()

# One pkg-config token list for a plain dependency.
function(_stem_pc_flags item out_var)
  if(item MATCHES "^-")
    set(flags "${item}")
  elseif(IS_ABSOLUTE "${item}")
    get_filename_component(dir "${item}" DIRECTORY)
    get_filename_component(file "${item}" NAME)
    if(file MATCHES "^lib(.+)\\.(so|a)(\\..*)?$")
      set(flags "-L${dir} -l${CMAKE_MATCH_1}")
    else()
      set(flags "${item}")
    endif()
  else()
    set(flags "-l${item}")
  endif()
  set(${out_var} "${flags}" PARENT_SCOPE)
endfunction()

# Called once every backend has been included. Sets STEM_PC_LIBS_PRIVATE.
function(stem_apply_link_deps)
  get_target_property(object_deps stem_objects LINK_LIBRARIES)
  get_target_property(shared_deps stem LINK_LIBRARIES)
  foreach(v object_deps shared_deps)
    if(NOT ${v})
      set(${v} "")
    endif()
  endforeach()
  if(object_deps)
    target_link_libraries(stem PRIVATE ${object_deps})
  endif()

  set(flat_deps "")
  foreach(item IN LISTS object_deps shared_deps)
    _stem_flatten_dep("${item}" flat)
    list(APPEND flat_deps ${flat})
  endforeach()
  list(REMOVE_DUPLICATES flat_deps)
  if(TARGET stem_static AND flat_deps)
    target_link_libraries(stem_static PRIVATE ${flat_deps})
  endif()

  set(pc "")
  foreach(item IN LISTS flat_deps)
    _stem_pc_flags("${item}" flags)
    list(APPEND pc ${flags})
  endforeach()
  list(REMOVE_DUPLICATES pc)
  list(JOIN pc " " pc)
  set(STEM_PC_LIBS_PRIVATE "${pc}" PARENT_SCOPE)
endfunction()

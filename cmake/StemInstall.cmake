# Install rules: libstem.so (soname: see CMakeLists.txt), libstem.a, stem.h, the
# CMake package (stem::stem, stem::stem_static) and stem.pc. Everything
# installed is relocatable: `cmake --install build --prefix DIR` works for any
# DIR, whatever CMAKE_INSTALL_PREFIX was at configure time.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(STEM_CMAKE_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/stem)
set(STEM_PKGCONFIG_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

set(STEM_BACKENDS cpu)
foreach(backend IN ITEMS cuda opencl vulkan)
  string(TOUPPER ${backend} BACKEND_UPPER)
  if(STEM_${BACKEND_UPPER})
    list(APPEND STEM_BACKENDS ${backend})
  endif()
endforeach()

set(stem_install_targets stem)
if(TARGET stem_static)
  list(APPEND stem_install_targets stem_static)
endif()
install(TARGETS ${stem_install_targets} EXPORT stemTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_SOURCE_DIR}/api/stem.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

install(EXPORT stemTargets NAMESPACE stem:: FILE stemTargets.cmake
        DESTINATION ${STEM_CMAKE_INSTALL_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/stemConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/stemConfig.cmake
                              INSTALL_DESTINATION ${STEM_CMAKE_INSTALL_DIR}
                              PATH_VARS CMAKE_INSTALL_INCLUDEDIR)
# Compatible releases share a soname: same major version from 1.0, same
# major.minor in 0.x (README, "Versioning and ABI").
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(STEM_PACKAGE_COMPAT SameMinorVersion)
else()
  set(STEM_PACKAGE_COMPAT SameMajorVersion)
endif()
write_basic_package_version_file(${PROJECT_BINARY_DIR}/stemConfigVersion.cmake
                                 COMPATIBILITY ${STEM_PACKAGE_COMPAT})
install(FILES ${PROJECT_BINARY_DIR}/stemConfig.cmake ${PROJECT_BINARY_DIR}/stemConfigVersion.cmake
        DESTINATION ${STEM_CMAKE_INSTALL_DIR})

# stem.pc finds its prefix from its own location (${pcfiledir}).
if(IS_ABSOLUTE "${STEM_PKGCONFIG_INSTALL_DIR}")
  set(STEM_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH rel "/prefix/${STEM_PKGCONFIG_INSTALL_DIR}" "/prefix")
  string(REGEX REPLACE "/$" "" rel "${rel}")
  set(STEM_PC_PREFIX "\${pcfiledir}/${rel}")
endif()
foreach(dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(STEM_PC_${dir} "${CMAKE_INSTALL_${dir}}")
  else()
    set(STEM_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
  endif()
endforeach()
list(JOIN STEM_BACKENDS " " STEM_PC_BACKENDS)
configure_file(${PROJECT_SOURCE_DIR}/cmake/stem.pc.in ${PROJECT_BINARY_DIR}/stem.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/stem.pc DESTINATION ${STEM_PKGCONFIG_INSTALL_DIR})

# The stem tool, finding the library next to it (bin/../lib).
if(TARGET stem_tool)
  file(RELATIVE_PATH rel "/prefix/${CMAKE_INSTALL_BINDIR}" "/prefix/${CMAKE_INSTALL_LIBDIR}")
  set_target_properties(stem_tool PROPERTIES INSTALL_RPATH "$ORIGIN/${rel}")
  install(TARGETS stem_tool RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

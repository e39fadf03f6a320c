// CHDF5: the HDF5 C API. HDF5's type and property-list ids (H5T_NATIVE_FLOAT, H5P_*) and
// file-access flags are macros over library globals that Swift cannot import, so this
// header re-exports them as static inline getters. Only SortedIO imports this module.
#ifndef SORTEDTRAIN_CHDF5_SHIM_H
#define SORTEDTRAIN_CHDF5_SHIM_H
#include <hdf5.h>

static inline hid_t chdf5_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t chdf5_native_int64(void) { return H5T_NATIVE_INT64; }
static inline hid_t chdf5_native_uint64(void) { return H5T_NATIVE_UINT64; }
static inline hid_t chdf5_c_s1(void) { return H5T_C_S1; }
static inline hid_t chdf5_p_default(void) { return H5P_DEFAULT; }
static inline hid_t chdf5_p_link_create(void) { return H5P_LINK_CREATE; }
static inline hid_t chdf5_s_all(void) { return H5S_ALL; }
static inline unsigned chdf5_f_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline unsigned chdf5_f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned chdf5_f_acc_rdwr(void) { return H5F_ACC_RDWR; }
static inline size_t chdf5_variable(void) { return H5T_VARIABLE; }
#endif

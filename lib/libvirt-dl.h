/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libvirt, libvirt-qemu and libxml2, loaded when first needed (dlopen), not
 * linked: the binary starts on a host without libvirt (plain QEMU, Proxmox)
 * and the initrd, which runs only early-boot, does not carry libvirt and
 * its ~60 MB of libraries. Only libvirt.c and libvirt-hook.c include this;
 * they call sym_NAME for NAME, after hu_libvirt_dlopen() or hu_xml_dlopen()
 * succeeded.
 */
#pragma once
#ifdef HU_WITH_LIBVIRT
#include <libvirt/libvirt.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#define HU_LIBVIRT_SONAME      "libvirt.so.0"
#define HU_LIBVIRT_QEMU_SONAME "libvirt-qemu.so.0"
#define HU_LIBXML2_SONAME      "libxml2.so.2"

/* X(library, symbol): every symbol we use, by the library that has it. */
#define HU_XML_SYMBOLS(X)            \
	X(xml, xmlDocDumpMemory)     \
	X(xml, xmlDocGetRootElement) \
	X(xml, xmlFreeDoc)           \
	X(xml, xmlFreeNode)          \
	X(xml, xmlGetProp)           \
	X(xml, xmlInitParser)        \
	X(xml, xmlNewChild)          \
	X(xml, xmlNewNs)             \
	X(xml, xmlNewProp)           \
	X(xml, xmlNodeGetContent)    \
	X(xml, xmlReadMemory)        \
	X(xml, xmlSearchNsByHref)    \
	X(xml, xmlSetNs)             \
	X(xml, xmlStrEqual)          \
	X(xml, xmlStrlen)            \
	X(xml, xmlUnlinkNode)
#define HU_LIBVIRT_SYMBOLS(X)                     \
	X(virt, virConnectClose)                  \
	X(virt, virConnectIsAlive)                \
	X(virt, virConnectOpen)                   \
	X(virt, virDomainCreateXML)               \
	X(virt, virDomainDestroyFlags)            \
	X(virt, virDomainFree)                    \
	X(virt, virDomainGetControlInfo)          \
	X(virt, virDomainGetAutostart)            \
	X(virt, virDomainGetID)                   \
	X(virt, virDomainGetJobInfo)              \
	X(virt, virDomainGetName)                 \
	X(virt, virDomainGetXMLDesc)              \
	X(virt, virDomainIsActive)                \
	X(virt, virDomainIsPersistent)            \
	X(virt, virDomainLookupByUUIDString)      \
	X(virt, virDomainRef)                     \
	X(virt, virDomainResume)                  \
	X(virt, virGetLastError)                  \
	X(virt, virSetErrorFunc)                  \
	X(virt_qemu, virDomainQemuMonitorCommand) \
	X(virt_qemu, virDomainQemuMonitorCommandWithFiles)

#define HU_DL_DECLARE(lib, name) extern typeof(name) *sym_##name;
HU_XML_SYMBOLS(HU_DL_DECLARE)
HU_LIBVIRT_SYMBOLS(HU_DL_DECLARE)
#undef HU_DL_DECLARE
/* libxml2's deallocator is a variable (xmlFreeFunc xmlFree), not a function */
extern xmlFreeFunc *sym_xmlFree;
#define hu_xml_free(p) ((*sym_xmlFree)(p))

/* Load libxml2 (the hook), or libxml2, libvirt and libvirt-qemu; once per
 * process, thread-safe. On failure: -ENOPKG and, in *ret_why, which library
 * and what to install. */
int hu_xml_dlopen(char **ret_why);
int hu_libvirt_dlopen(char **ret_why);
#endif

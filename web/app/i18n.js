// Translations (English and Simplified Chinese) and the language switch.
//
// The language comes from localStorage ("pvce.lang") if the user picked one,
// otherwise from navigator.languages. Static labels carry data-i18n* attributes
// (see applyI18n) so switching the language relabels the page in place without
// tearing anything down (a console session keeps running).

const STRINGS = {
  en: {
    'app.name': 'pvce',
    'app.tagline': 'Lab virtual machines',
    'lang.switch': '中文',
    'lang.switch.aria': 'Switch language to Chinese',
    'nav.main': 'Main navigation',
    'nav.courses': 'My courses',
    'nav.teach': 'Courses',
    'nav.templates': 'Templates',
    'nav.nodes': 'Nodes',
    'nav.users': 'Users',
    'role.student': 'Student',
    'role.teacher': 'Teacher',
    'role.admin': 'Administrator',
    'common.loading': 'Loading…',
    'common.cancel': 'Cancel',
    'common.close': 'Close',
    'common.dismiss': 'Dismiss',
    'common.create': 'Create',
    'common.save': 'Save',
    'common.back': 'Back',
    'common.refresh': 'Refresh',
    'common.never': 'never',
    'common.none': '—',

    'login.title': 'Sign in',
    'login.subtitle': 'Use the account your lab centre gave you.',
    'login.username': 'Username',
    'login.password': 'Password',
    'login.submit': 'Sign in',
    'login.busy': 'Signing in…',
    'login.failed': 'Wrong username or password.',
    'login.hero.title': 'Your lab computer, in the browser',
    'login.hero.body': 'Start the virtual machines of your courses and work on their desktop right in this page. Your files stay in your own disk layer.',
    'logout': 'Sign out',

    'state.stopped': 'Stopped',
    'state.starting': 'Starting',
    'state.running': 'Running',
    'state.stopping': 'Stopping',
    'state.error': 'Error',

    'student.title': 'My courses',
    'student.subtitle': 'Your personal virtual machines, one set per course.',
    'student.empty': 'You are not enrolled in any course yet. Ask your teacher to add you.',
    'course.novms': 'No virtual machines in this course for you yet.',
    'vm.specs': '{vcpus} vCPU · {mem}',
    'vm.lastUsed': 'Last used {when}',
    'vm.disk': 'Your data: {size}',
    'vm.template': 'Template: {name}',
    'vm.start': 'Start',
    'vm.shutdown': 'Shut down',
    'vm.poweroff': 'Force off',
    'vm.reboot': 'Reboot',
    'vm.reset': 'Reset',
    'vm.open': 'Open desktop',
    'vm.more': 'More actions for {name}',
    'vm.actions': 'Actions for {name}',
    'vm.started': '{name} is running.',
    'vm.shutdownSent': 'Shutdown requested for {name}.',
    'vm.poweredOff': '{name} was forced off.',
    'vm.rebooted': '{name} is rebooting.',
    'vm.resetDone': '{name} was reset to a fresh copy of its template.',
    'vm.error': 'Problem: {msg}',
    'reset.title': 'Reset “{name}”?',
    'reset.body': 'All data in this virtual machine will be lost: every file you created or changed is deleted and the machine goes back to a fresh copy of the course template. This cannot be undone.',
    'reset.confirm': 'Reset and lose all data',
    'poweroff.title': 'Force off “{name}”?',
    'poweroff.body': 'This is like pulling the power plug: unsaved work in the virtual machine is lost. Use “Shut down” when you can.',
    'poweroff.confirm': 'Force off',

    'desktop.back': 'Back to my courses',
    'desktop.title': 'Desktop of {name}',
    'desktop.cad': 'Ctrl+Alt+Del',
    'desktop.cad.aria': 'Send Ctrl+Alt+Del to the virtual machine',
    'desktop.fullscreen': 'Full screen',
    'desktop.exitFullscreen': 'Exit full screen',
    'desktop.paste': 'Paste as typing',
    'desktop.paste.label': 'Text to type into the virtual machine',
    'desktop.paste.help': 'The text is typed key by key (US keyboard layout), so it works even where the clipboard does not.',
    'desktop.paste.send': 'Type it',
    'desktop.paste.typing': 'Typing {done}/{total}…',
    'desktop.paste.stop': 'Stop typing',
    'desktop.paste.done': 'Typed {n} characters.',
    'desktop.paste.notConnected': 'Not connected to the desktop.',
    'desktop.screen': 'Virtual machine screen',
    'desktop.status.connecting': 'Connecting…',
    'desktop.status.connected': 'Connected',
    'desktop.status.connectedSize': 'Connected · {w}×{h}',
    'desktop.status.reconnecting': 'Connection lost — reconnecting ({n}/{max})…',
    'desktop.status.disconnected': 'Disconnected',
    'desktop.status.stopped': 'The virtual machine is not running.',
    'desktop.status.gaveUp': 'Could not reconnect after {n} attempts.',
    'desktop.status.reason': 'Disconnected: {reason}',
    'desktop.status.unclean': 'The connection was interrupted.',
    'desktop.status.security': 'The console refused the connection: {reason}',
    'desktop.status.credentials': 'The console asked for a password, which pvce never needs. Please report this to the lab staff.',
    'desktop.reconnect': 'Reconnect',
    'desktop.startVm': 'Start the VM',
    'desktop.notRunning': '{name} is not running. Start it to use its desktop.',
    'desktop.state': 'VM state: {state}',
    'desktop.close.1000': 'closed',
    'desktop.close.1001': 'the server is going away',
    'desktop.close.1006': 'the connection dropped',
    'desktop.close.1008': 'refused by the server',
    'desktop.close.1011': 'server error',
    'desktop.close.4001': 'the VM stopped',
    'desktop.close.4002': 'the VM moved to another node',
    'desktop.close.4003': 'the VM\'s console cannot be reached',
    'desktop.close.4004': 'the server is restarting',
    'desktop.close.4005': 'the VM\'s console refused the server\'s credentials',
    'desktop.close.1002': 'the console handshake failed',
    'desktop.reasonLine': 'Reason: {reason}',

    'time.justNow': 'just now',

    'error.network': 'Cannot reach the server. Check your network connection.',
    'error.session': 'Your session has ended. Please sign in again.',
    'error.generic': 'Something went wrong ({status}).',
    'error.notFound': 'Not found.',

    'teach.title': 'Courses',
    'teach.subtitle': 'Your courses, their students and their virtual machines.',
    'teach.empty': 'No courses yet. Create one from a template.',
    'teach.new': 'New course',
    'teach.students': '{n} students',
    'teach.open': 'Open class view',
    'teach.class': 'Class view',
    'teach.col.student': 'Student',
    'teach.col.vm': 'VM',
    'teach.col.state': 'State',
    'teach.col.lastUsed': 'Last started',
    'teach.col.disk': 'Layer size',
    'teach.col.actions': 'Actions',
    'teach.console': 'Console',
    'teach.noStudents': 'No students enrolled yet.',
    'teach.enrol': 'Enrol students',
    'teach.enrol.label': 'Usernames (one per line, or separated by commas or spaces)',
    'teach.enrol.submit': 'Enrol',
    'teach.enrol.done': 'Enrolled {enrolled}; {vms} VMs created.',
    'teach.enrol.unknown': 'Unknown usernames: {names}',
    'teach.enrol.notStudents': 'Not student accounts: {names}',
    'teach.startAll': 'Start all',
    'teach.stopAll': 'Shut down all',
    'teach.bulkDone': '{n} requests sent.',
    'course.code': 'Course code',
    'course.name': 'Course name',
    'course.spec.name': 'VM name',
    'course.spec.template': 'Template',
    'course.spec.vcpus': 'vCPUs',
    'course.spec.memory': 'Memory (MiB)',
    'course.spec.add': 'Add another VM',
    'course.spec.remove': 'Remove this VM',
    'course.created': 'Course {code} created.',
    'course.noTemplates': 'No ready templates yet: import an image first.',

    'tpl.title': 'Template library',
    'tpl.subtitle': 'Each template is its parent plus more software (a qcow2 backing chain).',
    'tpl.empty': 'No templates yet.',
    'tpl.expand': 'Expand {name}',
    'tpl.collapse': 'Collapse {name}',
    'tpl.size': 'own layer {size}',
    'tpl.state.ready': 'Ready',
    'tpl.state.draft': 'Draft',
    'tpl.state.failed': 'Failed',
    'tpl.match': 'What does my course need?',
    'tpl.match.find': 'Find a template',
    'tpl.match.exact': 'Exact match: {name}',
    'tpl.match.use': 'Create a course on it',
    'tpl.match.base': 'Best base: {name}',
    'tpl.match.missing': 'Still to install:',
    'tpl.match.none': 'No template has this operating system yet: import an image first.',
    'tpl.derive.name': 'Name of the new template',
    'tpl.derive.go': 'Derive from this base',
    'tpl.derive.started': 'Draft {name} created: install the software in its console, then seal it.',
    'tpl.seal': 'Seal template',
    'tpl.seal.title': 'Seal “{name}”?',
    'tpl.seal.body': 'The build VM is shut down and the template becomes read-only, ready for courses. Install everything the course needs before sealing.',
    'tpl.sealed': 'Template {name} is sealed and ready.',
    'tpl.upload': 'Import an image',
    'tpl.upload.file': 'Image file (RAW, IMG, VMDK or QCOW2)',
    'tpl.upload.name': 'Template name',
    'tpl.upload.format': 'Format',
    'tpl.upload.os': 'Operating system',
    'tpl.upload.software': 'Software (comma separated)',
    'tpl.upload.parent': 'Parent template (optional)',
    'tpl.upload.noParent': 'None (a new OS image)',
    'tpl.upload.submit': 'Upload',
    'tpl.upload.progress': 'Uploading {pct}% ({done} of {total})',
    'tpl.upload.processing': 'Checking the image…',
    'tpl.upload.done': 'Template {name} imported.',
    'tpl.upload.chooseFile': 'Choose a file first.',

    'nodes.title': 'Nodes',
    'nodes.subtitle': 'Hypervisor nodes and their load.',
    'nodes.empty': 'No nodes registered.',
    'nodes.col.name': 'Name',
    'nodes.col.state': 'State',
    'nodes.col.cpu': 'CPU',
    'nodes.col.mem': 'Memory',
    'nodes.col.vms': 'VMs',
    'nodes.col.store': 'Template store',
    'nodes.col.seen': 'Last seen',
    'nodes.state.up': 'Up',
    'nodes.state.down': 'Down',
    'nodes.state.maintenance': 'Maintenance',
    'nodes.free': '{size} free',
    'nodes.maintenance.on': 'Enter maintenance',
    'nodes.maintenance.off': 'End maintenance',
    'nodes.maintenance.aria': 'Toggle maintenance mode of {name}',
    'nodes.col.actions': 'Actions',
    'nodes.summary': '{up} of {total} nodes up · {vms} VMs running',

    'users.title': 'Users',
    'users.subtitle': 'Accounts of students, teachers and administrators.',
    'users.col.username': 'Username',
    'users.col.name': 'Display name',
    'users.col.role': 'Role',
    'users.create': 'Create a user',
    'users.role': 'Role',
    'users.displayName': 'Display name (optional)',
    'users.created': 'User {name} created.',
    'users.username': 'Username',
    'users.password': 'Initial password',
    'users.import': 'Import from CSV',
    'users.import.help': 'Header: username,display_name,role,password',
    'users.import.file': 'CSV file',
    'users.import.submit': 'Import',
    'users.import.done': 'Created {created}, skipped {skipped}.',
    'users.import.errors': 'Line {line}: {message}',
  },
  'zh-CN': {
    'app.name': 'pvce',
    'app.tagline': '虚拟实验环境',
    'lang.switch': 'English',
    'lang.switch.aria': '切换为英文界面',
    'nav.main': '主导航',
    'nav.courses': '我的课程',
    'nav.teach': '课程管理',
    'nav.templates': '模板库',
    'nav.nodes': '节点',
    'nav.users': '用户',
    'role.student': '学生',
    'role.teacher': '教师',
    'role.admin': '管理员',
    'common.loading': '加载中…',
    'common.cancel': '取消',
    'common.close': '关闭',
    'common.dismiss': '关闭提示',
    'common.create': '创建',
    'common.save': '保存',
    'common.back': '返回',
    'common.refresh': '刷新',
    'common.never': '从未',
    'common.none': '—',

    'login.title': '登录',
    'login.subtitle': '请使用实验中心为你分配的账号。',
    'login.username': '用户名',
    'login.password': '密码',
    'login.submit': '登录',
    'login.busy': '正在登录…',
    'login.failed': '用户名或密码错误。',
    'login.hero.title': '在浏览器里使用你的实验电脑',
    'login.hero.body': '启动课程的虚拟机，直接在本页面中使用它的桌面。你的文件保存在属于你自己的磁盘层中。',
    'logout': '退出登录',

    'state.stopped': '已关机',
    'state.starting': '正在启动',
    'state.running': '运行中',
    'state.stopping': '正在关机',
    'state.error': '出错',

    'student.title': '我的课程',
    'student.subtitle': '你的个人虚拟机，每门课程一组。',
    'student.empty': '你还没有加入任何课程，请联系任课教师。',
    'course.novms': '本课程还没有为你创建虚拟机。',
    'vm.specs': '{vcpus} 个 vCPU · {mem}',
    'vm.lastUsed': '上次使用：{when}',
    'vm.disk': '个人数据：{size}',
    'vm.template': '模板：{name}',
    'vm.start': '开机',
    'vm.shutdown': '关机',
    'vm.poweroff': '强制断电',
    'vm.reboot': '重启',
    'vm.reset': '重置',
    'vm.open': '打开桌面',
    'vm.more': '{name} 的更多操作',
    'vm.actions': '{name} 的操作',
    'vm.started': '{name} 已开机。',
    'vm.shutdownSent': '已向 {name} 发送关机请求。',
    'vm.poweredOff': '{name} 已强制断电。',
    'vm.rebooted': '{name} 正在重启。',
    'vm.resetDone': '{name} 已重置为课程模板的全新副本。',
    'vm.error': '问题：{msg}',
    'reset.title': '重置“{name}”？',
    'reset.body': '该虚拟机中的所有数据都将丢失：你创建或修改过的所有文件都会被删除，虚拟机恢复为课程模板的全新副本。此操作无法撤销。',
    'reset.confirm': '重置并清除所有数据',
    'poweroff.title': '强制断电“{name}”？',
    'poweroff.body': '这相当于直接拔掉电源：虚拟机中未保存的工作会丢失。能正常关机时请使用“关机”。',
    'poweroff.confirm': '强制断电',

    'desktop.back': '返回我的课程',
    'desktop.title': '{name} 的桌面',
    'desktop.cad': 'Ctrl+Alt+Del',
    'desktop.cad.aria': '向虚拟机发送 Ctrl+Alt+Del',
    'desktop.fullscreen': '全屏',
    'desktop.exitFullscreen': '退出全屏',
    'desktop.paste': '粘贴为键入',
    'desktop.paste.label': '要键入到虚拟机中的文本',
    'desktop.paste.help': '文本会按美式键盘逐键输入，即使剪贴板不可用也能使用。',
    'desktop.paste.send': '开始键入',
    'desktop.paste.typing': '正在键入 {done}/{total}…',
    'desktop.paste.stop': '停止键入',
    'desktop.paste.done': '已键入 {n} 个字符。',
    'desktop.paste.notConnected': '尚未连接到桌面。',
    'desktop.screen': '虚拟机屏幕',
    'desktop.status.connecting': '正在连接…',
    'desktop.status.connected': '已连接',
    'desktop.status.connectedSize': '已连接 · {w}×{h}',
    'desktop.status.reconnecting': '连接已断开，正在重新连接（{n}/{max}）…',
    'desktop.status.disconnected': '已断开',
    'desktop.status.stopped': '虚拟机未在运行。',
    'desktop.status.gaveUp': '重试 {n} 次后仍无法重新连接。',
    'desktop.status.reason': '已断开：{reason}',
    'desktop.status.unclean': '连接意外中断。',
    'desktop.status.security': '控制台拒绝了连接：{reason}',
    'desktop.status.credentials': '控制台要求输入密码，pvce 本不需要密码。请向实验中心报告此问题。',
    'desktop.reconnect': '重新连接',
    'desktop.startVm': '启动虚拟机',
    'desktop.notRunning': '{name} 未在运行，请先开机再使用桌面。',
    'desktop.state': '虚拟机状态：{state}',
    'desktop.close.1000': '已关闭',
    'desktop.close.1001': '服务器正在关闭',
    'desktop.close.1006': '连接中断',
    'desktop.close.1008': '被服务器拒绝',
    'desktop.close.1011': '服务器错误',
    'desktop.close.4001': '虚拟机已停止',
    'desktop.close.4002': '虚拟机已迁移到其他节点',
    'desktop.close.4003': '无法连接虚拟机的控制台',
    'desktop.close.4004': '服务器正在重启',
    'desktop.close.4005': '虚拟机控制台拒绝了服务器的认证',
    'desktop.close.1002': '控制台握手失败',
    'desktop.reasonLine': '原因：{reason}',

    'time.justNow': '刚刚',

    'error.network': '无法连接服务器，请检查网络。',
    'error.session': '登录已失效，请重新登录。',
    'error.generic': '出现错误（{status}）。',
    'error.notFound': '未找到。',

    'teach.title': '课程管理',
    'teach.subtitle': '你的课程、学生以及他们的虚拟机。',
    'teach.empty': '还没有课程，可以基于模板创建一门。',
    'teach.new': '新建课程',
    'teach.students': '{n} 名学生',
    'teach.open': '查看班级',
    'teach.class': '班级视图',
    'teach.col.student': '学生',
    'teach.col.vm': '虚拟机',
    'teach.col.state': '状态',
    'teach.col.lastUsed': '上次启动',
    'teach.col.disk': '磁盘层大小',
    'teach.col.actions': '操作',
    'teach.console': '控制台',
    'teach.noStudents': '还没有学生加入。',
    'teach.enrol': '添加学生',
    'teach.enrol.label': '用户名（每行一个，或用逗号、空格分隔）',
    'teach.enrol.submit': '添加',
    'teach.enrol.done': '已添加 {enrolled} 名学生，创建了 {vms} 台虚拟机。',
    'teach.enrol.unknown': '未知用户名：{names}',
    'teach.enrol.notStudents': '不是学生账号：{names}',
    'teach.startAll': '全部开机',
    'teach.stopAll': '全部关机',
    'teach.bulkDone': '已发送 {n} 个请求。',
    'course.code': '课程代码',
    'course.name': '课程名称',
    'course.spec.name': '虚拟机名称',
    'course.spec.template': '模板',
    'course.spec.vcpus': 'vCPU 数',
    'course.spec.memory': '内存（MiB）',
    'course.spec.add': '再添加一台虚拟机',
    'course.spec.remove': '删除这台虚拟机',
    'course.created': '课程 {code} 已创建。',
    'course.noTemplates': '还没有可用的模板，请先导入镜像。',

    'tpl.title': '模板库',
    'tpl.subtitle': '每个模板都是在父模板基础上增加软件（qcow2 后端链）。',
    'tpl.empty': '还没有模板。',
    'tpl.expand': '展开 {name}',
    'tpl.collapse': '折叠 {name}',
    'tpl.size': '本层 {size}',
    'tpl.state.ready': '可用',
    'tpl.state.draft': '草稿',
    'tpl.state.failed': '失败',
    'tpl.match': '我的课程需要什么？',
    'tpl.match.find': '查找模板',
    'tpl.match.exact': '完全匹配：{name}',
    'tpl.match.use': '基于它创建课程',
    'tpl.match.base': '最佳基础模板：{name}',
    'tpl.match.missing': '还需安装：',
    'tpl.match.none': '还没有该操作系统的模板，请先导入镜像。',
    'tpl.derive.name': '新模板名称',
    'tpl.derive.go': '基于此模板派生',
    'tpl.derive.started': '草稿模板 {name} 已创建：请在其控制台中安装软件，然后封装。',
    'tpl.seal': '封装模板',
    'tpl.seal.title': '封装“{name}”？',
    'tpl.seal.body': '构建虚拟机将被关闭，模板变为只读，可用于课程。封装前请安装好课程所需的全部软件。',
    'tpl.sealed': '模板 {name} 已封装，可以使用。',
    'tpl.upload': '导入镜像',
    'tpl.upload.file': '镜像文件（RAW、IMG、VMDK 或 QCOW2）',
    'tpl.upload.name': '模板名称',
    'tpl.upload.format': '格式',
    'tpl.upload.os': '操作系统',
    'tpl.upload.software': '软件（用逗号分隔）',
    'tpl.upload.parent': '父模板（可选）',
    'tpl.upload.noParent': '无（新的操作系统镜像）',
    'tpl.upload.submit': '上传',
    'tpl.upload.progress': '正在上传 {pct}%（{done} / {total}）',
    'tpl.upload.processing': '正在检查镜像…',
    'tpl.upload.done': '模板 {name} 已导入。',
    'tpl.upload.chooseFile': '请先选择文件。',

    'nodes.title': '节点',
    'nodes.subtitle': '虚拟化节点及其负载。',
    'nodes.empty': '还没有注册节点。',
    'nodes.col.name': '名称',
    'nodes.col.state': '状态',
    'nodes.col.cpu': 'CPU',
    'nodes.col.mem': '内存',
    'nodes.col.vms': '虚拟机',
    'nodes.col.store': '模板存储',
    'nodes.col.seen': '最近响应',
    'nodes.state.up': '正常',
    'nodes.state.down': '离线',
    'nodes.state.maintenance': '维护中',
    'nodes.free': '剩余 {size}',
    'nodes.maintenance.on': '进入维护',
    'nodes.maintenance.off': '结束维护',
    'nodes.maintenance.aria': '切换 {name} 的维护模式',
    'nodes.col.actions': '操作',
    'nodes.summary': '{total} 个节点中 {up} 个正常 · {vms} 台虚拟机运行中',

    'users.title': '用户',
    'users.subtitle': '学生、教师和管理员账号。',
    'users.col.username': '用户名',
    'users.col.name': '显示名称',
    'users.col.role': '角色',
    'users.create': '创建用户',
    'users.role': '角色',
    'users.displayName': '显示名称（可选）',
    'users.created': '用户 {name} 已创建。',
    'users.username': '用户名',
    'users.password': '初始密码',
    'users.import': '从 CSV 导入',
    'users.import.help': '表头：username,display_name,role,password',
    'users.import.file': 'CSV 文件',
    'users.import.submit': '导入',
    'users.import.done': '新建 {created} 个，跳过 {skipped} 个。',
    'users.import.errors': '第 {line} 行：{message}',
  },
};

export const LANGS = Object.keys(STRINGS);
const KEY = 'pvce.lang';
let current = detect();
const listeners = new Set();

function normalise(tag) {
  if (!tag) return null;
  const t = String(tag).toLowerCase();
  if (t.startsWith('zh')) return 'zh-CN';
  if (t.startsWith('en')) return 'en';
  return null;
}

function detect() {
  let saved = null;
  try { saved = localStorage.getItem(KEY); } catch { /* storage disabled */ }
  if (saved && STRINGS[saved]) return saved;
  const prefs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language];
  for (const p of prefs) {
    const n = normalise(p);
    if (n) return n;
  }
  return 'en';
}

export function lang() { return current; }

/** Translates `key`, filling `{name}` placeholders from `args`. */
export function t(key, args) {
  const s = (STRINGS[current] && STRINGS[current][key]) ?? STRINGS.en[key] ?? key;
  if (!args) return s;
  return s.replace(/\{(\w+)\}/g, (m, k) => (k in args ? String(args[k]) : m));
}

/** Switches the language, remembers it and relabels the page. */
export function setLang(l) {
  if (!STRINGS[l] || l === current) return;
  current = l;
  try { localStorage.setItem(KEY, l); } catch { /* storage disabled */ }
  document.documentElement.lang = l;
  applyI18n(document.body);
  for (const f of listeners) f(l);
}

export function toggleLang() {
  setLang(current === 'en' ? 'zh-CN' : 'en');
}

export function onLangChange(f) {
  listeners.add(f);
  return () => listeners.delete(f);
}

const ATTRS = [
  ['i18n', null],
  ['i18nAria', 'aria-label'],
  ['i18nTitle', 'title'],
  ['i18nPh', 'placeholder'],
];

/** Relabels every element under `root` that carries data-i18n* attributes. */
export function applyI18n(root) {
  const sel = '[data-i18n],[data-i18n-aria],[data-i18n-title],[data-i18n-ph]';
  const els = root.matches && root.matches(sel) ? [root, ...root.querySelectorAll(sel)] : root.querySelectorAll(sel);
  for (const el of els) {
    const args = el.dataset.i18nArgs ? JSON.parse(el.dataset.i18nArgs) : undefined;
    for (const [prop, attr] of ATTRS) {
      const key = el.dataset[prop];
      if (!key) continue;
      if (attr) el.setAttribute(attr, t(key, args)); else el.textContent = t(key, args);
    }
  }
}

/** Binds `el`'s text (or an attribute) to a translation key so it follows language switches. */
export function bind(el, key, args, attr) {
  const prop = attr === 'aria-label' ? 'i18nAria' : attr === 'title' ? 'i18nTitle' : attr === 'placeholder' ? 'i18nPh' : 'i18n';
  el.dataset[prop] = key;
  if (args) el.dataset.i18nArgs = JSON.stringify(args); else delete el.dataset.i18nArgs;
  if (attr) el.setAttribute(attr, t(key, args)); else el.textContent = t(key, args);
  return el;
}

document.documentElement.lang = current;

